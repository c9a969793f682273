from dataclasses import asdict, dataclass

from django.db.models import Q, QuerySet

from controlplane.accounts.selectors import is_platform_admin, visible_teams
from controlplane.audit import chain
from controlplane.audit.models import AuditChainHead, AuditEvent

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
    checked: int
    first_broken_id: int | None = None
    problem: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def audit_chain_verify() -> ChainReport:
    """Re-hash every event in id order and check each link, then the head.

    Streams the table, so memory does not grow with it. Reports the first broken link: an event
    whose content no longer matches its hash, whose prev_hash is not its predecessor's hash (an
    event before it was removed or rewritten), or the end of the chain going missing.
    """
    rows = AuditEvent.objects.order_by("id").values("id", "hash", *chain.FIELDS)
    expected_prev = chain.GENESIS
    checked = 0
    last_id = None

    def broken(event_id, problem):
        return ChainReport(False, checked, event_id, problem)

    for row in rows.iterator(chunk_size=VERIFY_CHUNK):
        checked += 1
        event_id = row["id"]
        if row["hash"] is None or row["prev_hash"] is None:
            return broken(event_id, f"Event {event_id} is not chained: it was written around audit_record.")
        if row["prev_hash"] != expected_prev:
            before = f"event {last_id}" if last_id is not None else "the start of the chain"
            return broken(event_id, f"Event {event_id} does not follow {before}: an event between them was removed or rewritten.")
        if chain.event_hash(row) != row["hash"]:
            return broken(event_id, f"Event {event_id} was changed after it was written: its content does not match its hash.")
        expected_prev = row["hash"]
        last_id = event_id
    head = AuditChainHead.objects.filter(pk=1).values_list("last_id", "last_hash").first()
    if head is not None and head[0] is not None and (head[0], head[1]) != (last_id, expected_prev):
        if last_id is None or head[0] > last_id:
            return broken(head[0], f"The chain should end at event {head[0]} but ends at {last_id or 'nothing'}: "
                                   "events at its end were removed.")
        return broken(head[0], f"The chain head was moved back to event {head[0]}; the chain ends at {last_id}.")
    return ChainReport(True, checked)
