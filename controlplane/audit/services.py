import ipaddress
import json
import logging

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from controlplane.accounts.access import authorize_platform_admin
from controlplane.audit import chain
from controlplane.audit.context import Actor
from controlplane.audit.models import (
    AuditChainHead,
    AuditCheckpoint,
    AuditEvent,
    Source,
)
from controlplane.audit.selectors import (
    ChainReport,
    audit_chain_known_break,
    audit_checkpoint_latest,
    chain_walk,
)
from controlplane.common.locks import cache_lock
from controlplane.common.tasks import enqueue

log = logging.getLogger(__name__)


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


def update_audited(obj: models.Model, *, actor: Actor, action: str, changes: dict, fields: list[str], duplicate,
                   team=None) -> bool:
    """Apply the values in ``changes`` that differ, validate, save only those fields and record
    before and after. Returns False, writing and auditing nothing, when nothing differs. Saving only
    the changed fields keeps a concurrent writer's fields (a prober's, say) as that writer left them.
    A unique-constraint clash raises ``duplicate``, and nothing is written."""
    changes = {name: value for name, value in changes.items() if getattr(obj, name) != value}
    if not changes:
        return False
    before = snapshot(obj, fields)
    for name, value in changes.items():
        setattr(obj, name, value)
    obj.full_clean(validate_unique=False)  # a clash on a unique field is the database's to find
    try:
        with transaction.atomic():
            obj.save(update_fields=list(changes))
            audit_record(actor=actor, action=action, obj=obj, team=team, before=before, after=snapshot(obj, fields))
    except IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise duplicate from None
    return True


def _is_unique_violation(exc: IntegrityError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(exc)


# ---------------------------------------------------------------------------------------------
# Verification checkpoints

CHECKPOINT_CHUNK = 50_000  # events per saved checkpoint while extending: progress survives a crash
VERIFY_LOCK = "audit:chain-verify"
VERIFY_LOCK_SECONDS = 3600
VERIFY_FULL_TASK = "audit.verify_full"


def audit_checkpoint_extend(*, chunk: int = CHECKPOINT_CHUNK) -> ChainReport | None:
    """Verify the events past the newest checkpoint, chunk by chunk, saving a checkpoint after
    each, up to the head. Periodic; returns None when there is nothing it may do: another
    verification runs, or a break stands (only a full verification can clear it).

    Moving a checkpoint is bookkeeping and writes no audit event; finding a break does.
    """
    if audit_chain_known_break() is not None:
        return None
    with _verify_lock(wait=False) as held:
        if not held:
            return None
        while True:
            start = audit_checkpoint_latest()
            report = chain_walk(start=start, limit=chunk)
            if not report.ok:
                with transaction.atomic():
                    checkpoint = _save_outcome(report, full=False)
                    audit_record(actor=Actor.system(Source.SCHEDULE), action="audit.chain_broken", obj=checkpoint,
                                 after=_outcome(report), reason=report.problem)
                return report
            if report.verified_to is not None and (start is None or report.verified_to > start.event_id):
                _save_outcome(report, full=False)
            if report.complete:
                return report


def audit_chain_verify_full(*, actor: Actor, reason: str = "") -> ChainReport:
    """Re-hash the whole chain, trusting no checkpoint, and record the outcome: a checkpoint
    (which clears a standing break when the chain verifies again) and an audit event."""
    with _verify_lock(wait=True):
        report = chain_walk(start=None, limit=None)
        with transaction.atomic():
            checkpoint = _save_outcome(report, full=True)
            audit_record(actor=actor, action="audit.verify_full", obj=checkpoint, after=_outcome(report),
                         reason=reason or report.problem)
    return report


def audit_verify_full_request(*, actor: Actor, reason: str = "") -> AuditEvent:
    """A platform admin asks for a full verification; a worker runs it. Audited here, queued on commit."""
    authorize_platform_admin(actor)
    head = AuditChainHead.objects.filter(pk=1).first() or AuditChainHead(pk=1, last_id=None)
    with transaction.atomic():
        event = audit_record(actor=actor, action="audit.verify_full_request", obj=head, reason=reason)
        enqueue(VERIFY_FULL_TASK, request_event_id=event.pk)  # if the broker is down, the command can run it
    return event


def _save_outcome(report: ChainReport, *, full: bool) -> AuditCheckpoint:
    return AuditCheckpoint.objects.create(
        ok=report.ok, event_id=report.verified_to, event_hash=report.verified_hash, events=report.events, full=full,
        first_broken_id=report.first_broken_id, problem=report.problem,
    )


def _outcome(report: ChainReport) -> dict:
    return {"ok": report.ok, "checked": report.checked, "verified_to": report.verified_to, "events": report.events,
            "first_broken_id": report.first_broken_id}


def _verify_lock(*, wait: bool):
    """One verification at a time, so that a periodic extension cannot save an ok checkpoint
    after a concurrent full check recorded a break. A full check waits; an extension skips."""
    return cache_lock(VERIFY_LOCK, VERIFY_LOCK_SECONDS, wait=VERIFY_LOCK_SECONDS if wait else 0)
