from django.contrib import admin

from controlplane.audit.models import AuditCheckpoint, AuditEvent
from controlplane.common.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The table is append-only in the database too (see migration 0002)."""

    list_display = ["created_at", "actor_name", "source", "action", "object_repr"]
    list_filter = ["source", "action"]
    search_fields = ["actor_name", "object_repr", "action", "request_id"]
    readonly_fields = ["created_at", "prev_hash", "hash"]  # not editable, so otherwise hidden


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "ok", "full", "event_id", "events", "first_broken_id"]
    list_filter = ["ok", "full"]
