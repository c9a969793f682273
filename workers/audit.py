"""Celery tasks that verify the audit chain, so that no web request has to re-hash it."""
import logging

from controlplane.audit import services
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent, Source
from workers.base import task

log = logging.getLogger(__name__)


@task("audit.checkpoint_extend")
def checkpoint_extend():
    """Periodic: verify the events since the last checkpoint and move it to the chain's end."""
    report = services.audit_checkpoint_extend()
    if report is not None and not report.ok:
        log.error("audit chain broken at event %s: %s", report.first_broken_id, report.problem)
    return None if report is None else report.ok


@task(services.VERIFY_FULL_TASK)
def verify_full(request_event_id: int | None = None):
    """A full re-verification a platform admin asked for (the request is audit event
    ``request_event_id``)."""
    requested = AuditEvent.objects.filter(pk=request_event_id).values_list("actor_name", flat=True).first()
    reason = f"requested by {requested} in event {request_event_id}" if requested else ""
    report = services.audit_chain_verify_full(actor=Actor.system(Source.WORKER), reason=reason)
    return report.ok
