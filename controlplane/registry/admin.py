from django.contrib import admin

from controlplane.common.admin import ReadOnlyAdmin
from controlplane.registry.models import Model, ModelVersion


@admin.register(Model)
class ModelAdmin(ReadOnlyAdmin):
    list_display = ["name", "team", "backend", "max_batch_size", "created_at"]
    list_filter = ["backend", "team"]
    search_fields = ["name"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["model", "version", "status", "size_bytes", "created_at"]
