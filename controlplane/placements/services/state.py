"""Recorded changes of a target's state: each one a compare-and-set on (state, attempt) with its
audit event in the same transaction, so a late answer from an older attempt changes nothing."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.endpoints.publication import request_publish
from controlplane.placements import conf
from controlplane.placements.models import (
    ACTIVE_STATES,
    Drift,
    Placement,
    PlacementTarget,
    TargetState,
)
from controlplane.quotas.services import quota_release


@dataclass(frozen=True)
class Claim:
    """One target claimed for a load or an unload: everything the I/O needs, no ORM objects."""

    target_id: int
    attempt: int
    url: str
    server_name: str
    name: str  # Triton's model name
    versions: tuple[int, ...]
    config: dict
    reason: str = ""


@dataclass(frozen=True)
class Outcome:
    state: str
    seconds: float | None = None
    error: str = ""


def targets(**filters):
    return PlacementTarget.objects.select_related("placement", "model__team", "server", "reservation").filter(**filters)


def claim(target: PlacementTarget, *, to: str, actor: Actor, action: str, reason: str = "") -> Claim | None:
    """Move a target to LOADING or UNLOADING if nobody changed it since it was read; audited."""
    now = timezone.now()
    lease = now + timedelta(seconds=conf.LEASE_S) if to == TargetState.LOADING else None
    with transaction.atomic():
        changed = PlacementTarget.objects.filter(pk=target.pk, state=target.state, attempt=target.attempt).update(
            state=to, attempt=F("attempt") + 1, state_changed_at=now, error="", lease_until=lease
        )
        if not changed:
            return None
        audit_record(actor=actor, action=action, obj=target, team=target.model.team,
                     before={"state": target.state}, after={"state": to}, reason=reason)
        if target.state == TargetState.READY:
            request_publish()  # a READY target leaving READY leaves the routing table
    placement = target.placement
    return Claim(
        target_id=target.pk, attempt=target.attempt + 1, url=target.server.http_url, server_name=target.server_name,
        name=target.model.triton_name, versions=tuple(placement.versions), config=placement.rendered_config, reason=reason,
    )


def unload_claim(target: PlacementTarget) -> Claim:
    """An unload needs no state change to claim: the target is UNLOADING already."""
    return Claim(target_id=target.pk, attempt=target.attempt, url=target.server.http_url, server_name=target.server_name,
                 name=target.model.triton_name, versions=tuple(target.placement.versions), config={})


def retire(actor: Actor, target: PlacementTarget, *, reason: str, team, action: str = "placement.target.replace") -> bool:
    """Mark a target removed without unloading (its successor loads over it), releasing its GPUs."""
    changed = PlacementTarget.objects.filter(pk=target.pk, state=target.state, attempt=target.attempt).update(
        state=TargetState.REMOVED, state_changed_at=timezone.now(), attempt=F("attempt") + 1
    )
    if not changed:
        return False
    if target.reservation_id:
        quota_release(actor=actor, reservation=target.reservation, reason=reason)
    audit_record(actor=actor, action=action, obj=target, team=team, before={"state": target.state},
                 after={"state": TargetState.REMOVED}, reason=reason)
    if target.state == TargetState.READY:
        request_publish()  # the routing table lists READY targets only
    return True


def close_if_empty(actor: Actor, placement_id: int, *, reason: str) -> None:
    """A placement with no active target left is over: mark it removed."""
    if PlacementTarget.objects.filter(placement_id=placement_id, state__in=ACTIVE_STATES).exists():
        return
    now = timezone.now()
    if Placement.objects.filter(pk=placement_id, removed_at__isnull=True).update(removed_at=now):
        placement = Placement.objects.select_related("model__team").get(pk=placement_id)
        audit_record(actor=actor, action="placement.remove", obj=placement, team=placement.model.team,
                     before={"removed_at": None}, after={"removed_at": now.isoformat()}, reason=reason)


def transition(target: PlacementTarget, to: str, actor: Actor, *, error: str, reason: str, **extra) -> bool:
    """A compare-and-set state change found by observation (adopt READY, mark stuck); audited."""
    now = timezone.now()
    with transaction.atomic():
        changed = PlacementTarget.objects.filter(pk=target.pk, state=target.state, attempt=target.attempt).update(
            state=to, state_changed_at=now, error=error, attempt=F("attempt") + 1, **extra
        )
        if changed:
            after = {"state": to} | ({"error": error} if error else {})
            audit_record(actor=actor, action=f"placement.target.{to}", obj=target, team=target.model.team,
                         before={"state": target.state}, after=after, reason=reason)
            if TargetState.READY in (target.state, to):
                request_publish()  # adopted READY, or no longer READY
    return bool(changed)


def record_load(claim: Claim, outcome: Outcome, actor: Actor) -> str | None:
    """Store a load's outcome unless the target moved on meanwhile; returns the state, None if stale."""
    now = timezone.now()
    fields = {"error": outcome.error, "last_checked_at": now}
    if outcome.state == TargetState.READY:
        fields.update(state=TargetState.READY, state_changed_at=now, loaded_at=now, load_seconds=outcome.seconds,
                      drift=Drift.NONE, drift_detail="")
    elif outcome.state == TargetState.FAILED:
        fields.update(state=TargetState.FAILED, state_changed_at=now, load_seconds=outcome.seconds)
    with transaction.atomic():
        changed = PlacementTarget.objects.filter(
            pk=claim.target_id, state=TargetState.LOADING, attempt=claim.attempt
        ).update(**fields)
        if not changed:
            return None  # replaced, removed or claimed again meanwhile: this answer is stale
        if outcome.state == TargetState.LOADING:
            return outcome.state  # no change of state; the note is on the row
        target = PlacementTarget.objects.select_related("model__team").get(pk=claim.target_id)
        after = {"state": outcome.state, "load_seconds": outcome.seconds}
        if outcome.error:
            after["error"] = outcome.error
        audit_record(actor=actor, action=f"placement.target.{outcome.state}", obj=target, team=target.model.team,
                     before={"state": TargetState.LOADING}, after=after, reason=claim.reason)
        if outcome.state == TargetState.READY:
            request_publish()  # a READY target joins its variants in the routing table
    return outcome.state


def record_removed(target_id: int, attempt: int | None, actor: Actor, *, note: str = "", reason: str = "") -> bool:
    """UNLOADING or STUCK -> REMOVED, releasing the reservation; audited."""
    with transaction.atomic():
        query = PlacementTarget.objects.filter(pk=target_id, state__in=[TargetState.UNLOADING, TargetState.STUCK])
        if attempt is not None:
            query = query.filter(attempt=attempt)
        target = query.select_related("model__team", "reservation").select_for_update(of=("self",)).first()
        if target is None:
            return False
        before = target.state
        PlacementTarget.objects.filter(pk=target.pk).update(
            state=TargetState.REMOVED, state_changed_at=timezone.now(), error=note, drift=Drift.NONE, drift_detail=""
        )
        if target.reservation_id:
            quota_release(actor=actor, reservation=target.reservation, reason=f"{target} unloaded")
        after = {"state": TargetState.REMOVED} | ({"note": note} if note else {})
        audit_record(actor=actor, action="placement.target.removed", obj=target, team=target.model.team,
                     before={"state": before}, after=after, reason=reason)
    return True
