from django.contrib import admin

from controlplane.registry.models import Model, ModelVersion


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "backend", "max_batch_size", "created_at"]
    list_filter = ["backend", "team"]
    search_fields = ["name"]

    def has_change_permission(self, request, obj=None):
        return False  # changes go through the services, which audit them


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["model", "version", "status", "size_bytes", "created_at"]

    def has_change_permission(self, request, obj=None):
        return False
