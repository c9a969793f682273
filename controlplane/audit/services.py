import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent


def snapshot(obj: models.Model, fields: list[str]) -> dict:
    """A JSON-safe copy of the named fields, for an event's before/after."""
    data = {}
    for name in fields:
        attribute = f"{name}_id" if isinstance(obj._meta.get_field(name), models.ForeignKey) else name
        data[name] = getattr(obj, attribute)
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: models.Model,
    team=None,
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
) -> AuditEvent:
    """Write one audit event. Must run inside the transaction that makes the change."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must be called inside transaction.atomic() with the change it records")
    return AuditEvent.objects.create(
        actor_user=actor.user,
        actor_name=actor.name,
        token_id=actor.token_id,
        source=actor.source,
        request_id=actor.request_id,
        ip=actor.ip,
        team=team,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action=action,
        before=before,
        after=after,
        reason=reason,
    )
