import json

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Source(models.TextChoices):
    UI = "ui"
    API = "api"
    CLI = "cli"
    WORKER = "worker"
    SCHEDULE = "schedule"
    SYSTEM = "system"


class AuditEvent(models.Model):
    """One change. Rows keep their own copies of names, so they read correctly after deletions.

    Foreign keys carry no database constraint: an audit row never cascades or blocks a delete.
    The table is append-only (database triggers refuse UPDATE and DELETE), and rows form a hash
    chain (see chain.py); write rows only with ``services.audit_record``.
    """

    # Set by audit_record before the insert, because the value is part of the hash.
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    token_id = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    action = models.CharField(max_length=64, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # Unique, so a second event claiming the same predecessor (a fork) cannot be stored. NULL
    # marks a row written around audit_record, which chain verification reports.
    prev_hash = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    hash = models.CharField(max_length=64, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.object_repr}"

    def changes(self) -> list[dict]:
        """What differs between before and after, key by key, with values as compact JSON.

        Each item is ``{"key", "kind", "before", "after"}``; kind is added, removed or changed.
        """
        before, after = _as_dict(self.before), _as_dict(self.after)
        out = []
        for key in [*before, *(k for k in after if k not in before)]:
            if key in before and key in after and before[key] == after[key]:
                continue
            kind = "changed" if key in before and key in after else "removed" if key in before else "added"
            out.append({"key": key, "kind": kind, "before": _compact(before.get(key)), "after": _compact(after.get(key))})
        return out


def _as_dict(value) -> dict:
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _compact(value) -> str:
    if isinstance(value, str) and value:
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class AuditChainHead(models.Model):
    """The one row that says where the chain ends. audit_record locks it to serialize appends,
    and verification compares it with the last event, which catches a deleted tail."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_id = models.BigIntegerField(null=True)
    last_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="audit_chainhead_single_row")]

    def __str__(self):
        return f"audit chain head at event {self.last_id}"


class AuditCheckpoint(models.Model):
    """One verification's outcome. When ok: the chain verified from its start up to event
    ``event_id``, whose hash is ``event_hash``. When not: where it broke, which stands until a
    later full verification passes.

    Derived bookkeeping, not an audit event: the quick check re-hashes only what lies past the
    newest ok checkpoint. A full check trusts no checkpoint.
    """

    ok = models.BooleanField(default=True)
    event_id = models.BigIntegerField(null=True, db_index=True, help_text="The last event verified.")
    event_hash = models.CharField(max_length=64, blank=True)
    events = models.BigIntegerField(default=0, help_text="How many events the chain holds up to event_id.")
    full = models.BooleanField(default=False, help_text="Made by a full verification from the start of the chain.")
    first_broken_id = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        if not self.ok:
            return f"audit chain broken at event {self.first_broken_id}"
        return f"audit chain verified to event {self.event_id}"
