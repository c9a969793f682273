"""Recording a deployment's transitions: the one place that changes `Deployment.state`.

Each transition is a compare-and-set on the old state (and the step it was on), written with its
history row, its audit event and its webhook deliveries in one transaction. Traffic changes that
belong to the transition (rolling back sets green's share to 0, promoting to 100) are part of
the same update, and the routing table is published right after the commit, so a Roll back
click reaches the gateways in milliseconds, before any worker picks the deployment up.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.common.errors import Conflict
from controlplane.common.tasks import enqueue
from controlplane.deployments.machine import TERMINAL, Cause, Event, State, cause_of, transition
from controlplane.deployments.services.endpoint_moves import rollback_write
from controlplane.deployments.models import HOLDING, Deployment, DeploymentTransition
from controlplane.endpoints.publication import request_publish
from controlplane.notifications.services import notify

# Which transitions people hear about by webhook.
NOTIFY = {
    State.VALIDATING: "started",
    State.PAUSED: "paused",
    State.ROLLED_BACK: "rolled_back",
    State.ABORTED: "rolled_back",
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed",
    State.ROLLBACK_FAILED: "failed",
}


def holder_of(endpoint_id: int, *, exclude: int | None = None) -> Deployment | None:
    """The deployment that holds an endpoint now (at most one, by the database's constraint)."""
    found = Deployment.objects.filter(endpoint_id=endpoint_id, state__in=HOLDING)
    if exclude is not None:
        found = found.exclude(pk=exclude)
    return found.order_by("id").first()


def busy(endpoint_id: int, *, exclude: int | None = None) -> Conflict:
    other = holder_of(endpoint_id, exclude=exclude)
    name = f"deployment {other.pk} ({other.state.replace('_', ' ')})" if other else "another deployment"
    return Conflict("endpoint", f"The endpoint already has an active deployment: {name}. Wait for it, or roll it back.")


def apply_event(deployment: Deployment, event: Event, *, actor: Actor, reason: str = "", changes: dict | None = None,
                detail: dict | None = None, expect_step: int | None = None, side_effects=None) -> Deployment | None:
    """Move ``deployment`` by ``event`` if nobody moved it since it was read; returns the fresh row,
    or None when the compare-and-set lost (someone else moved it first). Raises machine.Refused
    when the state does not allow the event, and Conflict when the endpoint is held by another.

    ``side_effects(deployment)`` runs inside the transaction after the update (moving a label, say).
    """
    old = State(deployment.state)
    cause = cause_of(event) if event != Event.OK else (deployment.cause or None)
    new = transition(old, event, cause=cause)
    now = timezone.now()
    fields = {"state": new.value, "state_changed_at": now, "status_text": "", "next_run_at": now}
    if new == State.ROLLING_BACK:
        cause = cause or Cause(deployment.cause)  # a retry of a failed rollback keeps its cause
        fields.update(cause=cause.value, traffic_percent=0)
    if new in TERMINAL or new == State.ROLLBACK_FAILED:
        fields["finished_at"] = now
        fields["next_run_at"] = None
    if new == State.SUCCEEDED:
        fields["succeeded_at"] = now
    fields.update(changes or {})
    match = {"pk": deployment.pk, "state": old.value}
    if expect_step is not None:
        match["step_index"] = expect_step
    try:
        with transaction.atomic():
            if not Deployment.objects.filter(**match).update(**fields):
                return None
            fresh = Deployment.objects.select_related("team", "endpoint__team", "model", "blue_version",
                                                      "green_version").get(pk=deployment.pk)
            if new == State.ROLLING_BACK and old in (State.PROMOTING, State.SUCCEEDED):
                rollback_write(fresh)  # the label had moved to green: back to blue, first
            if side_effects is not None:
                side_effects(fresh)
            _record(fresh, old, new, event, actor=actor, reason=reason, detail=detail or {}, at=now)
            request_publish()
            enqueue("deployments.advance", fresh.pk)
    except IntegrityError as exc:
        if "deployment_one_active_per_endpoint" in str(exc):
            raise busy(deployment.endpoint_id, exclude=deployment.pk) from None
        raise
    return fresh


def _record(d: Deployment, old: State, new: State, event: Event, *, actor: Actor, reason: str, detail: dict, at) -> None:
    DeploymentTransition.objects.create(
        deployment=d, from_state=old.value, to_state=new.value, event=event.value, actor_name=actor.name[:150],
        source=actor.source, reason=reason, detail={**detail, "traffic_percent": d.traffic_percent}, at=at,
    )
    audit_record(
        actor=actor, action=f"deployment.{event.value}", obj=d, team=d.team,
        before={"state": old.value}, after={"state": new.value, "traffic_percent": d.traffic_percent,
                                            "step_index": d.step_index, **({"cause": d.cause} if d.cause else {}),
                                            **detail},
        reason=reason,
    )
    kind = NOTIFY.get(new)
    if kind is not None and not (kind == "started" and old != State.PENDING):
        notify_deployment(d, kind, reason or d.status_text)


def notify_deployment(d: Deployment, event: str, text: str) -> None:
    title = (f"{d.endpoint.public_name}: deployment {d.pk} (v{d.blue_version.version} → v{d.green_version.version}) "
             f"{event.replace('_', ' ')}")
    notify(
        team=d.team, endpoint=d.endpoint, event=event, title=title,
        fields={"deployment": d.pk, "state": d.state, "blue_version": d.blue_version.version,
                "green_version": d.green_version.version, "traffic_percent": d.traffic_percent,
                "reason": text or ""},
        url=d.get_absolute_url(),
    )


def record_created(d: Deployment, *, actor: Actor, reason: str) -> None:
    """The first history row and audit event, in the creating transaction."""
    now = timezone.now()
    DeploymentTransition.objects.create(
        deployment=d, from_state="", to_state=d.state, event="create", actor_name=actor.name[:150],
        source=actor.source, reason=reason, detail={}, at=now,
    )
