"""The Django admin is a read-only window on the data.

Every change to state must go through a service, which authorizes it and writes its audit event
in the same transaction; the admin's add, change and delete views do neither. So every model the
admin shows, Django's users and groups included, is shown read-only.
"""
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete, so no bulk delete action either. Viewing stays."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyUserAdmin(ReadOnlyAdmin, UserAdmin):
    pass


class ReadOnlyGroupAdmin(ReadOnlyAdmin, GroupAdmin):
    pass


for model, model_admin in ((get_user_model(), ReadOnlyUserAdmin), (Group, ReadOnlyGroupAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
