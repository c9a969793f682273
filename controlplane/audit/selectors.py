from dataclasses import asdict, dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from controlplane.accounts.selectors import is_platform_admin, visible_teams
from controlplane.audit import chain
from controlplane.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent

VERIFY_CHUNK = 2000


def audit_events_visible(user) -> QuerySet[AuditEvent]:
    """Events of the user's teams; platform-wide events (no team) only for platform admins."""
    events = AuditEvent.objects.select_related("team")
    if is_platform_admin(user):
        return events
    return events.filter(Q(team__in=visible_teams(user)))


def audit_events_for(obj) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk))


def audit_actions(events: QuerySet[AuditEvent]) -> list[str]:
    """The distinct actions among ``events``, for the filter form's suggestions."""
    return list(events.order_by("action").values_list("action", flat=True).distinct()[:200])


def audit_object_types(events: QuerySet[AuditEvent]) -> list[str]:
    return list(events.order_by("object_type").values_list("object_type", flat=True).distinct()[:100])


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int  # events re-hashed by this check
    first_broken_id: int | None = None
    problem: str = ""
    scope: str = "full"  # "full": from the start of the chain; "tail": from the newest checkpoint
    start_after: int | None = None  # the checkpoint's event, trusted up to and re-hashed itself
    checkpoint_at: datetime | None = None  # when that checkpoint was verified
    verified_to: int | None = None  # the last event this check (with its checkpoint) vouches for
    verified_hash: str = ""
    events: int = 0  # events in the chain up to verified_to
    head_id: int | None = None  # where the chain ended when the check began
    complete: bool = True  # False: stopped after TAIL_LIMIT events, newer ones are pending

    def as_dict(self) -> dict:
        return asdict(self)


# The quick check re-hashes at most this many events past the checkpoint, so its cost is bounded
# even when the periodic task has fallen behind.
TAIL_LIMIT = 5000


def audit_checkpoint_latest() -> AuditCheckpoint | None:
    """The newest ok checkpoint: the furthest event a verification vouched for."""
    return AuditCheckpoint.objects.filter(ok=True).order_by("-event_id", "-id").first()


def audit_chain_known_break() -> AuditCheckpoint | None:
    """The latest verification outcome when it found the chain broken. It stands until a later
    full verification passes: the quick check cannot see a break before its checkpoint."""
    latest = AuditCheckpoint.objects.order_by("-id").first()
    return latest if latest is not None and not latest.ok else None


def audit_chain_verify() -> ChainReport:
    """Re-hash every event in id order and check each link, then the head. Cost grows with the
    chain: run it from the command or a worker, not in a request."""
    return chain_walk(start=None, limit=None)


def audit_chain_verify_tail(limit: int = TAIL_LIMIT) -> ChainReport:
    """The quick check, for the badge and the API: trust the newest checkpoint, re-hash its event
    and at most ``limit`` events after it, linking from the checkpoint's hash. Misses tampering
    before the checkpoint, which only the full check finds; a break it found stays reported."""
    known = audit_chain_known_break()
    if known is not None:
        return ChainReport(False, 0, known.first_broken_id, known.problem, scope="full" if known.full else "tail",
                           checkpoint_at=known.created_at, verified_to=known.event_id, verified_hash=known.event_hash,
                           events=known.events)
    return chain_walk(start=audit_checkpoint_latest(), limit=limit)


def chain_walk(*, start: AuditCheckpoint | None, limit: int | None) -> ChainReport:
    """Walk the chain from ``start`` (None: its beginning) and report the first broken link: an
    event whose content no longer matches its hash, whose prev_hash is not its predecessor's hash
    (an event before it was removed or rewritten), or the end of the chain going missing.

    The head is read before and after the walk. Appends are serialized by the head's lock and
    take ids in order, so every event up to the first reading is visible to the walk (a shorter
    chain lost its tail), and the head never lies below a committed event (unless moved back).
    Streams the table, so memory does not grow with it.
    """
    head = AuditChainHead.objects.filter(pk=1).values_list("last_id", "last_hash").first()
    head_id = head[0] if head else None
    scope = "full" if start is None else "tail"
    rows = AuditEvent.objects.order_by("id").values("id", "hash", *chain.FIELDS)
    expected_prev, last_id, events, checked = chain.GENESIS, None, 0, 0

    def outcome(first_broken_id=None, problem="", complete=True):
        return ChainReport(
            first_broken_id is None, checked, first_broken_id, problem, scope=scope, start_after=start and start.event_id,
            checkpoint_at=start and start.created_at, verified_to=last_id, verified_hash=expected_prev, events=events,
            head_id=head_id, complete=complete,
        )

    def broken(event_id, problem):
        return outcome(event_id, problem)

    if start is not None:
        anchor = rows.filter(pk=start.event_id).first()
        checked = 1
        if anchor is None:
            return broken(start.event_id, f"Event {start.event_id}, verified at a checkpoint, was removed.")
        if anchor["hash"] != start.event_hash or chain.event_hash(anchor) != start.event_hash:
            return broken(start.event_id, f"Event {start.event_id} was changed after a checkpoint verified it.")
        expected_prev, last_id, events = start.event_hash, start.event_id, start.events
        rows = rows.filter(id__gt=start.event_id)
    if limit is not None:
        rows = rows[:limit]

    walked = 0
    for row in rows.iterator(chunk_size=VERIFY_CHUNK):
        walked += 1
        checked += 1
        event_id = row["id"]
        if row["hash"] is None or row["prev_hash"] is None:
            return broken(event_id, f"Event {event_id} is not chained: it was written around audit_record.")
        if row["prev_hash"] != expected_prev:
            before = f"event {last_id}" if last_id is not None else "the start of the chain"
            return broken(event_id, f"Event {event_id} does not follow {before}: an event between them was removed or rewritten.")
        if chain.event_hash(row) != row["hash"]:
            return broken(event_id, f"Event {event_id} was changed after it was written: its content does not match its hash.")
        expected_prev, last_id = row["hash"], event_id
        events += 1
    if limit is not None and walked == limit and head_id is not None and last_id < head_id:
        return outcome(complete=False)
    if head_id is not None and (last_id is None or head_id > last_id):
        return broken(head_id, f"The chain should end at event {head_id} but ends at {last_id or 'nothing'}: "
                               "events at its end were removed.")
    now = AuditChainHead.objects.filter(pk=1).values_list("last_id", "last_hash").first()
    for seen in (head, now):
        if seen is not None and seen[0] is not None and seen[0] == last_id and seen[1] != expected_prev:
            return broken(last_id, f"The chain head names another hash for event {last_id}.")
    if now is not None and now[0] is not None and last_id is not None and now[0] < last_id:
        return broken(now[0], f"The chain head was moved back to event {now[0]}; the chain ends at {last_id}.")
    return outcome()
