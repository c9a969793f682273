"""Deployment commands: planning, creating, and the actions people take (promote, roll back,
abort, retry, resume, approve, cancel). The API, the CLI (through the API) and the UI call these.

Creating checks everything before anything is written: the request (`spec.parse_spec`), the
endpoint, blue and green, the servers, GPU memory headroom for a same-servers green, and the
quota with the surge of a new-servers green, which is reserved in the creating transaction and
released when blue retires (or green is rolled back). Nothing talks to Triton here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.accounts.access import authorize
from controlplane.accounts.models import Role
from controlplane.accounts.selectors import visible_teams
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.common.errors import Conflict
from controlplane.common.tasks import enqueue
from controlplane.deployments import planning
from controlplane.deployments.services import capacity
from controlplane.deployments.machine import Event, Refused, State, allowed
from controlplane.deployments.models import TRAFFIC_STATES, Deployment, GateEvaluation, PlacementMode
from controlplane.deployments.spec import Spec, parse_spec
from controlplane.deployments.services.endpoint_moves import promotion_write
from controlplane.deployments.services.transitions import apply_event, busy, record_created
from controlplane.endpoints.models import Endpoint, EndpointKind
from controlplane.endpoints.replicas import guard_trips
from controlplane.fleet.models import Server, ServerStatus
from controlplane.placements.models import PlacementTarget, TargetState
from controlplane.quotas.models import GpuQuota, Reservation, ReservationKind
from controlplane.quotas.selectors import team_devices_held
from controlplane.quotas.services import QuotaExceeded, quota_release, quota_reserve
from controlplane.registry.models import ModelVersion, VersionLabel, VersionStatus
from controlplane.serving.render import render_model_config
from controlplane.serving.selectors import serving_config_current

DEFAULT_LOAD_S = 2.0  # the projected load time when blue's own was never measured


@dataclass
class Resolved:
    """A checked request with the objects it names."""

    spec: Spec
    endpoint: Endpoint
    blue: ModelVersion
    green: ModelVersion
    blue_targets: list[PlacementTarget]  # READY targets serving blue
    servers: list[Server]  # where green goes
    green_devices: set[tuple[int, int]]
    plan: planning.Plan
    green_versions: list[int]  # the versions green's placement loads (same servers: blue's and green)


def _endpoint(actor: Actor, name: str) -> Endpoint:
    team_slug, _, short = name.partition(".")
    teams = visible_teams(actor.user) if actor.user is not None else None
    found = Endpoint.objects.select_related("team", "model__team").filter(team__slug=team_slug, name=short)
    if teams is not None:
        found = found.filter(team__in=teams)
    endpoint = found.first()
    if endpoint is None:
        raise ValidationError({"endpoint": f"No endpoint named {name!r} in your teams."})
    return endpoint


def _blue(endpoint: Endpoint) -> ModelVersion:
    if endpoint.kind == EndpointKind.LABEL:
        label = VersionLabel.objects.select_related("version").filter(model=endpoint.model, name=endpoint.label).first()
        if label is None:
            raise ValidationError({"endpoint": f"{endpoint.public_name} follows label {endpoint.label!r}, which is not set; "
                                               "there is no blue to move from."})
        return label.version
    variants = [v for v in endpoint.variants.select_related("version").all() if v.weight > 0]
    if len(variants) != 1:
        raise ValidationError({"endpoint": f"{endpoint.public_name} splits traffic over {len(variants)} variants; "
                                           "a deployment moves an endpoint that serves one version."})
    return variants[0].version


def _green(endpoint: Endpoint, spec: Spec, blue: ModelVersion) -> ModelVersion:
    model = endpoint.model
    if spec.label:
        label = VersionLabel.objects.select_related("version").filter(model=model, name=spec.label).first()
        if label is None:
            raise ValidationError({"label": f"{model.name} has no label {spec.label!r}."})
        green = label.version
        field = "label"
    else:
        green = ModelVersion.objects.filter(model=model, version=spec.version).first()
        field = "version"
        if green is None:
            raise ValidationError({"version": f"{model.name} has no version {spec.version}."})
    if green.status != VersionStatus.READY:
        raise ValidationError({field: f"{model.name} v{green.version} is still registering."})
    if green.pk == blue.pk:
        raise ValidationError({field: f"{endpoint.public_name} already serves v{green.version}; nothing to deploy."})
    return green


def _blue_targets(endpoint: Endpoint, blue: ModelVersion) -> list[PlacementTarget]:
    found = [
        t for t in PlacementTarget.objects.select_related("placement", "server").filter(
            model=endpoint.model, state=TargetState.READY, server__isnull=False)
        if blue.version in t.placement.versions
    ]
    if not found:
        raise ValidationError({"endpoint": f"v{blue.version} of {endpoint.model.name} is READY on no server; "
                                           "place it before deploying from it."})
    return found


def _new_servers(endpoint: Endpoint, names: tuple[str, ...]) -> list[Server]:
    servers = {s.name: s for s in Server.objects.filter(name__in=names)}
    missing = [n for n in names if n not in servers]
    if missing:
        raise ValidationError({"servers": f"No server named {', '.join(missing)}."})
    bad = [f"{s.name} is draining" for s in servers.values() if s.draining_since] + \
          [f"{s.name} is down ({s.last_error or 'not reachable'})" for s in servers.values() if s.status == ServerStatus.DOWN]
    if bad:
        raise ValidationError({"servers": "; ".join(sorted(bad)) + "."})
    taken = sorted(PlacementTarget.objects.filter(
        model=endpoint.model, server__in=servers.values()).exclude(state=TargetState.REMOVED)
        .values_list("server_name", flat=True))
    if taken:
        raise ValidationError({"servers": f"{endpoint.model.name} is already placed on {', '.join(taken)}; new_servers "
                                          "needs servers without it (or use same_servers)."})
    return [servers[n] for n in names]


def _quota(team) -> int:
    return GpuQuota.objects.filter(team=team).values_list("gpus", flat=True).first() or 0


def resolve(*, actor: Actor, data) -> Resolved:
    """Check a request and work out its plan. Raises ValidationError naming the field."""
    spec = parse_spec(data)
    endpoint = _endpoint(actor, spec.endpoint)
    authorize(actor, endpoint.team, Role.DEPLOYER)
    if spec.start_at is not None and spec.start_at <= timezone.now():
        raise ValidationError({"start_at": "The start time has passed; leave it out to start now."})
    blue = _blue(endpoint)
    green = _green(endpoint, spec, blue)
    blue_targets = _blue_targets(endpoint, blue)
    blue_devices = capacity.devices_of_targets(blue_targets)
    if spec.placement == PlacementMode.SAME_SERVERS:
        servers = sorted({t.server.pk: t.server for t in blue_targets}.values(), key=lambda s: s.name)
        versions = sorted({v for t in blue_targets for v in t.placement.versions} | {green.version})
        green_devices = set(blue_devices)
        problems = capacity.headroom_problems(capacity.gpu_headroom(blue_targets, blue.version))
        if problems:
            raise ValidationError({"placement": "No GPU memory headroom for green beside blue: " + "; ".join(problems)
                                                + ". Use new_servers, or free memory first."})
    else:
        servers = _new_servers(endpoint, spec.servers)
        versions = [green.version]
        rendered = render_model_config(endpoint.model, serving_config_current(endpoint.model), versions=versions)
        green_devices = set()
        for server in servers:
            green_devices |= capacity.devices_of(rendered, server)
    held = team_devices_held(endpoint.team)
    load_s = max((t.load_seconds or 0 for t in blue_targets), default=0) or DEFAULT_LOAD_S
    plan = planning.make_plan(
        steps=spec.steps, interval_s=spec.gates.interval_s, approval_required=spec.approval_required,
        rollback_window_s=spec.rollback_window_s, load_s=load_s, quota=_quota(endpoint.team), held=held,
        green_devices=green_devices,
        # What stays held when blue retires: a device blue shares with another model stays.
        other_devices=team_devices_held(endpoint.team, except_reservations=[
            t.reservation_id for t in blue_targets if t.reservation_id is not None]),
    )
    return Resolved(spec, endpoint, blue, green, blue_targets, servers, green_devices, plan, versions)


def deployment_plan(*, actor: Actor, data) -> Resolved:
    """The plan without starting anything (POST /deployments/plan/)."""
    return resolve(actor=actor, data=data)


def _over_quota(r: Resolved) -> QuotaExceeded:
    p = r.plan
    return QuotaExceeded(team=r.endpoint.team, limit=p.quota, held=p.held_now, needed=p.surge,
                         subject=f"deployment of {r.endpoint.model.name} v{r.green.version} on new servers (the surge)")


def deployment_create(*, actor: Actor, data) -> Deployment:
    """Create a deployment: scheduled when it has a start time, else pending for a worker at once.
    Refused with 409 when its plan exceeds the quota or the endpoint is held by another deployment."""
    r = resolve(actor=actor, data=data)
    if r.plan.over_quota:
        raise _over_quota(r)
    spec, endpoint = r.spec, r.endpoint
    now = timezone.now()
    state = State.SCHEDULED if spec.start_at else State.PENDING
    try:
        with transaction.atomic():
            d = Deployment.objects.create(
                team=endpoint.team, endpoint=endpoint, model=endpoint.model, blue_version=r.blue, green_version=r.green,
                target_label=spec.label, strategy=spec.strategy, steps=[s.as_dict() for s in spec.steps],
                placement_mode=spec.placement, servers=[{"id": s.pk, "name": s.name} for s in r.servers],
                gates=spec.gates.as_dict(), approval_required=spec.approval_required,
                deadline_at=None, rollback_window_s=spec.rollback_window_s, start_at=spec.start_at, reason=spec.reason,
                plan={**r.plan.as_dict(), "green_versions": r.green_versions,
                      "green_devices": sorted([sid, i] for sid, i in r.green_devices),
                      "blue_versions": sorted({v for t in r.blue_targets for v in t.placement.versions}),
                      "blue_variants": _variants_of(endpoint)},
                state=state, state_changed_at=now, next_run_at=spec.start_at or now,
                blue_placements=sorted({t.placement_id for t in r.blue_targets}), created_by=actor.user,
            )
            if spec.deadline_s is not None:
                d.deadline_at = (spec.start_at or now) + timedelta(seconds=spec.deadline_s)
                d.save(update_fields=["deadline_at"])
            reserve_surge(actor, d)
            record_created(d, actor=actor, reason=spec.reason)
            audit_record(actor=actor, action="deployment.create", obj=d, team=d.team, after=_snapshot(d), reason=spec.reason)
            if state == State.PENDING:
                enqueue("deployments.advance", d.pk)
    except IntegrityError as exc:
        if "deployment_one_active_per_endpoint" in str(exc):
            raise busy(endpoint.pk) from None
        raise
    return d


def _variants_of(endpoint: Endpoint) -> list[dict]:
    if endpoint.kind != EndpointKind.PINNED:
        return []
    return [{"name": v.name, "version": v.version.version, "weight": v.weight}
            for v in endpoint.variants.select_related("version").order_by("position", "id")]


def _snapshot(d: Deployment) -> dict:
    return {
        "endpoint": d.endpoint.public_name, "blue_version": d.blue_version.version, "green_version": d.green_version.version,
        "strategy": d.strategy, "steps": d.steps, "placement": d.placement_mode, "servers": [s["name"] for s in d.servers],
        "gates": d.gates, "approval_required": d.approval_required,
        "deadline_at": d.deadline_at.isoformat() if d.deadline_at else None,
        "rollback_window_s": d.rollback_window_s, "start_at": d.start_at.isoformat() if d.start_at else None,
        "state": d.state, "surge_devices": d.plan.get("surge", 0),
    }


def reserve_surge(actor: Actor, d: Deployment) -> None:
    """Reserve green's new devices (new servers only) for the deployment, under the quota's lock:
    at creation, and again when a failed deployment (whose surge was released) is retried."""
    if d.placement_mode != PlacementMode.NEW_SERVERS:
        return
    devices = {tuple(x) for x in d.plan.get("green_devices", [])}
    for server in Server.objects.filter(pk__in=[s["id"] for s in d.servers]).order_by("name"):
        indexes = sorted(i for (sid, i) in devices if sid == server.pk)
        if not indexes:
            continue
        try:
            quota_reserve(actor=actor, team=d.team, kind=ReservationKind.DEPLOYMENT, version=d.green_version,
                          server=server, devices=indexes, holder=f"deployment {d.pk}",
                          description=f"surge of deployment {d.pk}: {d.model.name} v{d.green_version.version} on {server.name}")
        except QuotaExceeded as refused:
            raise QuotaExceeded(
                team=d.team, limit=refused.limit, held=refused.held, needed=d.plan.get("surge", refused.needed),
                subject=f"deployment of {d.model.name} v{d.green_version.version} on new servers (the surge)",
            ) from None


def release_surge(actor: Actor, d: Deployment, reason: str) -> int:
    """Release the deployment's surge reservations; idempotent. Returns how many were released."""
    count = 0
    for reservation in Reservation.objects.select_related("team").filter(
            team=d.team, kind=ReservationKind.DEPLOYMENT, holder=f"deployment {d.pk}", released_at__isnull=True):
        quota_release(actor=actor, reservation=reservation, reason=reason)
        count += 1
    return count


# -- actions --------------------------------------------------------------------------------------


def _check_reason(reason) -> str:
    if not isinstance(reason, str) or len(reason) > 2000:
        raise ValidationError({"reason": "Give a text of at most 2000 characters."})
    return reason.strip()


PERSON_EVENTS = {
    "promote": Event.PROMOTE, "rollback": Event.ROLLBACK, "abort": Event.ABORT, "retry": Event.RETRY,
    "resume": Event.RESUME, "approve": Event.APPROVE, "cancel": Event.CANCEL,
}


def deployment_act(*, actor: Actor, deployment: Deployment, action: str, reason: str = "") -> Deployment:
    """A person's action. 409 (Conflict, field "state") when the state does not allow it."""
    if action not in PERSON_EVENTS:
        raise ValidationError({"action": f"Use one of {', '.join(PERSON_EVENTS)}."})
    authorize(actor, deployment.team, Role.DEPLOYER)
    reason = _check_reason(reason)
    event = PERSON_EVENTS[action]
    for _ in range(3):  # the worker may move it between our read and our write; read again
        deployment.refresh_from_db()
        state = State(deployment.state)
        side = None
        changes: dict = {}
        if event in (Event.PROMOTE, Event.APPROVE):
            changes = {"traffic_percent": 100}
            side = promotion_write
        elif event == Event.ROLLBACK and state == State.SUCCEEDED:
            if deployment.succeeded_at and timezone.now() > deployment.succeeded_at + timedelta(seconds=deployment.rollback_window_s):
                raise Conflict("state", "The rollback window is over; blue is being unloaded. Deploy blue again instead.")
        elif event == Event.RETRY and state == State.FAILED:
            changes = {"cause": "", "step_index": -1, "traffic_percent": 0, "failed_evaluations": 0,
                       "finished_at": None, "green_placement": None}
            side = lambda d: reserve_surge(actor, d)  # noqa: E731 - released when it failed
        elif event == Event.CANCEL:
            side = lambda d: release_surge(actor, d, "scheduled deployment cancelled")  # noqa: E731
        try:
            moved = apply_event(deployment, event, actor=actor, reason=reason, changes=changes, side_effects=side,
                                detail={"action": action})
        except Refused as exc:
            raise Conflict("state", str(exc)[0].upper() + str(exc)[1:] + ".") from None
        if moved is not None:
            return moved
    raise Conflict("state", "The deployment is changing state right now; try again.")


def deployment_guard_tripped(*, endpoint: str, version: int) -> int | None:
    """A gateway's guard stopped sending to green ``version`` of ``endpoint`` (a public name):
    confirm it with a breach, which rolls back. Returns the deployment rolled back, if any."""
    team_slug, _, name = endpoint.partition(".")
    d = (Deployment.objects.select_related("team", "endpoint__team", "model", "blue_version", "green_version")
         .filter(endpoint__team__slug=team_slug, endpoint__name=name, green_version__version=version,
                 state__in=TRAFFIC_STATES).first())
    if d is None or not allowed(d.state, Event.BREACH):
        return None
    since = d.started_at or d.created_at
    trips = guard_trips(endpoint, version, since)
    if not trips:
        return None
    worst = max(trips, key=lambda t: t.get("error_ratio", 0))
    text = (f"the gateway guard stopped sending to green: {worst.get('errors')} errors in {worst.get('requests')} "
            f"answers ({worst.get('error_ratio', 0):.0%}) on {len(trips)} replica(s)")
    with transaction.atomic():
        GateEvaluation.objects.create(
            deployment=d, step_index=d.step_index, gate="guard", value=worst.get("error_ratio"),
            limit=d.gates.get("max_error_ratio") or 0, requests=worst.get("requests") or 0,
            window_s=int(worst.get("window_s") or 10), verdict="fail", detail=text, at=timezone.now())
        moved = apply_event(d, Event.BREACH, actor=Actor.system("worker"), reason=text, detail={"gate": "guard"})
    return moved.pk if moved else None
