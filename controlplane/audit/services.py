import ipaddress
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from controlplane.audit import chain
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditChainHead, AuditEvent


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
    """Write one audit event. Must run inside the transaction that makes the change.

    Appends are serialized by the chain head's row lock, held until the caller commits, so keep
    audit_record near the end of short transactions. A rollback drops the event and the head
    move together.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must be called inside transaction.atomic() with the change it records")
    event = AuditEvent(
        created_at=timezone.now(),
        actor_user=actor.user,
        actor_name=actor.name[:150],
        token_id=actor.token_id,
        source=actor.source,
        request_id=(actor.request_id or "")[:64],
        ip=_valid_ip(actor.ip),
        team=team,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk)[:64],
        object_repr=str(obj)[:200],
        action=action,
        before=chain.normalize_json(before),
        after=chain.normalize_json(after),
        reason=reason or "",
    )
    event.prev_hash = _lock_chain_head()
    event.hash = chain.event_hash({name: getattr(event, name) for name in chain.FIELDS})
    event.save(force_insert=True)
    AuditChainHead.objects.filter(pk=1).update(last_id=event.pk, last_hash=event.hash)
    return event


def _lock_chain_head() -> str:
    """Lock the chain head and return the last event's hash. An UPDATE takes PostgreSQL's row
    lock and SQLite's write lock alike; a waiting writer then reads the head as its predecessor
    committed it."""
    table = connection.ops.quote_name(AuditChainHead._meta.db_table)
    sql = f"UPDATE {table} SET last_id = last_id WHERE id = 1 RETURNING last_hash"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
        if row is None:
            _create_chain_head()
            cursor.execute(sql)
            row = cursor.fetchone()
    return row[0]


def _create_chain_head() -> None:
    """The head row is missing (a flushed test database, say): start it at the last chained
    event. Concurrent creators wait on the same key, and all but one insert nothing."""
    last = AuditEvent.objects.exclude(hash=None).order_by("-id").values_list("id", "hash").first()
    head = AuditChainHead(id=1, last_id=last[0] if last else None, last_hash=last[1] if last else chain.GENESIS)
    AuditChainHead.objects.bulk_create([head], ignore_conflicts=True)


def _valid_ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:  # an odd REMOTE_ADDR must not stop the change being recorded
        return None


def create_audited(obj: models.Model, *, actor: Actor, action: str, fields: list[str], duplicate, team=None):
    """Insert a validated new row with its audit event; a unique-constraint clash raises ``duplicate``
    (a Conflict naming the field), and nothing is written."""
    try:
        with transaction.atomic():
            obj.save()
            audit_record(actor=actor, action=action, obj=obj, team=team, after=snapshot(obj, fields))
    except IntegrityError as exc:
        if not _is_unique_violation(exc):  # a NOT NULL or foreign key violation is no clash: a bug upstream
            raise
        raise duplicate from None
    return obj


def _is_unique_violation(exc: IntegrityError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(exc)
