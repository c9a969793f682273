"""Creating, retrying and removing placements: what people (UI, API, CLI) ask for.

Each command changes the desired state in one transaction with its audit events and queues the
Triton work by task name for after the commit; it never talks to Triton itself.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from controlplane.accounts.access import authorize
from controlplane.accounts.models import Role
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.common.errors import Conflict
from controlplane.common.tasks import enqueue
from controlplane.fleet.models import Server, ServerStatus
from controlplane.placements.models import (
    ACTIVE_STATES,
    RETRYABLE_STATES,
    Placement,
    PlacementTarget,
    TargetState,
)
from controlplane.placements.services.state import (
    claim,
    close_if_empty,
    retire,
    targets,
)
from controlplane.quotas.devices import devices_of
from controlplane.quotas.instance_groups import devices_for_instance_groups
from controlplane.quotas.models import ReservationKind
from controlplane.quotas.selectors import team_devices_held
from controlplane.quotas.services import QuotaExceeded, quota_reserve
from controlplane.registry.models import Model, ModelVersion, VersionStatus
from controlplane.serving.models import ServingConfig
from controlplane.serving.render import render_model_config
from controlplane.serving.selectors import serving_config_current
from controlplane.serving.validation import validate_spec


def _check_versions(model: Model, versions) -> list[ModelVersion]:
    if not isinstance(versions, (list, tuple)) or not versions:
        raise ValidationError({"versions": "Give at least one version number."})
    if any(isinstance(v, bool) or not isinstance(v, int) for v in versions):
        raise ValidationError({"versions": "Versions are integers, such as [3] or [2, 3]."})
    if len(set(versions)) != len(versions):
        raise ValidationError({"versions": "A version is listed twice."})
    found = {v.version: v for v in ModelVersion.objects.filter(model=model, version__in=versions, status=VersionStatus.READY)}
    missing = sorted(set(versions) - set(found))
    if missing:
        names = ", ".join(f"v{v}" for v in missing)
        raise ValidationError({"versions": f"{names} of {model.name} {'is' if len(missing) == 1 else 'are'} not a registered, ready version."})
    return [found[v] for v in sorted(versions)]


def _check_servers(servers) -> list[Server]:
    servers = list(servers or [])
    if not servers:
        raise ValidationError({"servers": "Choose at least one server."})
    names = [s.name for s in servers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValidationError({"servers": f"{', '.join(twice)} {'is' if len(twice) == 1 else 'are'} listed twice."})
    fresh = {s.pk: s for s in Server.objects.filter(pk__in=[s.pk for s in servers])}
    gone = [s.name for s in servers if s.pk not in fresh]
    if gone:
        raise ValidationError({"servers": f"No server named {', '.join(gone)}."})
    draining = sorted(fresh[s.pk].name for s in servers if fresh[s.pk].draining_since)
    if draining:
        verb = "is" if len(draining) == 1 else "are"
        raise ValidationError({"servers": f"{', '.join(draining)} {verb} draining, to be removed; place the model elsewhere."})
    down = [fresh[s.pk] for s in servers if fresh[s.pk].status == ServerStatus.DOWN]
    if down:
        detail = "; ".join(f"{s.name} ({s.last_error or 'not reachable'})" for s in down)
        raise ValidationError({"servers": f"Down at the last probe, so nothing can be loaded there: {detail}."})
    return [fresh[s.pk] for s in servers]


def _check_config(model: Model, config: ServingConfig | None) -> ServingConfig | None:
    if config is None:
        return serving_config_current(model)
    if config.model_id != model.pk:
        raise ValidationError({"config": f"Config revision {config.revision} belongs to another model."})
    return config


def _check_config_fits(model: Model, config: ServingConfig | None, servers: list[Server]) -> None:
    """The pinned config must suit every target server: no KIND_GPU instance group on a CPU-only one."""
    if config is None:
        return
    for has_gpus in sorted({server.gpu_count > 0 for server in servers}):
        try:
            validate_spec(config.spec, model=model, pool_has_gpus=has_gpus)
        except ValidationError as exc:
            kind = "GPU" if has_gpus else "CPU-only"
            problems = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
            raise ValidationError({"servers": f"Config r{config.revision} does not fit the {kind} servers: {problems}"}) from None


def devices_on_server(rendered: dict, server: Server) -> list[int]:
    """The GPU indexes of ``server`` that the placement occupies, sorted (see
    quotas/instance_groups.py). The number of versions does not matter: Triton starts every
    instance group once per loaded version on the same GPUs, so versions side by side (a
    same-servers green beside blue) cost GPU memory, not devices."""
    groups = rendered.get("instance_group")
    return sorted(devices_for_instance_groups(groups, server_gpu_count=server.gpu_count, server_name=server.name))


def _refusal(refused: QuotaExceeded, model: Model, numbers: list[int], devices: dict[int, list[int]],
             reserved: list[int]) -> QuotaExceeded:
    """The refusal of one server's reservation, restated for the whole placement: what the team
    holds besides this placement (whose replaced targets were released already), and the devices
    the placement adds to that."""
    held = team_devices_held(model.team, except_reservations=reserved)
    wanted = set().union(*(devices_of(server_id, indexes) for server_id, indexes in devices.items()))
    servers = len(devices)
    return QuotaExceeded(
        team=model.team, limit=refused.limit, held=len(held), needed=len(wanted - held),
        subject=f"{_label(model, numbers)} on {servers} server{'s' if servers != 1 else ''}",
    )


def _same_active_placement(model: Model, numbers: list[int], config: ServingConfig | None, servers: list[Server]):
    wanted = {s.pk for s in servers}
    candidates = Placement.objects.filter(model=model, removed_at__isnull=True, config=config).prefetch_related("targets")
    for placement in candidates:
        active = {t.server_id for t in placement.targets.all() if t.is_active}
        if placement.versions == numbers and active == wanted:
            return placement
    return None


def _label(model: Model, numbers: list[int]) -> str:
    return f"{model.name} v{','.join(map(str, numbers))}"


def placement_create(*, actor: Actor, model: Model, versions: list[int], servers: Iterable[Server],
                     config: ServingConfig | None = None) -> tuple[Placement, bool]:
    """Place versions of a model, with a config revision, on servers; returns (placement, created).

    ``config`` None means the model's current revision at this moment (Triton's defaults if it has
    none): the revision is pinned, so a later config change is never loaded behind anyone's back.
    The same request again is a no-op returning the existing placement. A server where the model
    already has an active target moves to the new placement; if that target is READY with exactly
    the same config it stays READY and is not reloaded.
    """
    authorize(actor, model.team, Role.DEPLOYER)
    version_rows = _check_versions(model, versions)
    numbers = [v.version for v in version_rows]
    servers = _check_servers(servers)
    config = _check_config(model, config)
    _check_config_fits(model, config, servers)
    rendered = render_model_config(model, config, versions=numbers)
    devices = {s.pk: devices_on_server(rendered, s) for s in servers}

    with transaction.atomic():
        Model.objects.select_for_update().filter(pk=model.pk).first()  # one placement change per model at a time
        existing = _same_active_placement(model, numbers, config, servers)
        if existing is not None:
            return existing, False
        placement = Placement.objects.create(
            model=model, versions=numbers, config=config, rendered_config=rendered, created_by=actor.user
        )
        current = {
            t.server_id: t
            for t in PlacementTarget.objects.select_for_update(of=("self",)).select_related("placement", "reservation")
            .filter(model=model, server__in=servers, state__in=ACTIVE_STATES)
        }
        now = timezone.now()
        replaced_placements = set()
        kept_loaded = set()
        # Retire every replaced target first: its devices are released before any is reserved,
        # whatever the order of the servers.
        for server in servers:
            old = current.get(server.pk)
            if old is None:
                continue
            if old.state == TargetState.READY and old.placement.rendered_config == rendered:
                kept_loaded.add(server.pk)
            retire(actor, old, reason=f"replaced by placement {placement.pk}", team=model.team)
            replaced_placements.add(old.placement_id)
        reserved: list[int] = []
        for server in servers:
            old = current.get(server.pk)
            keep_loaded = server.pk in kept_loaded
            reservation = None
            if devices[server.pk]:
                try:
                    reservation = quota_reserve(
                        actor=actor, team=model.team, kind=ReservationKind.PLACEMENT, server=server,
                        devices=devices[server.pk], version=version_rows[-1], holder=f"placement {placement.pk}",
                        description=f"{_label(model, numbers)} on {server.name}",
                    )
                except QuotaExceeded as refused:
                    raise _refusal(refused, model, numbers, devices, reserved) from None
                reserved.append(reservation.pk)
            target = PlacementTarget.objects.create(
                placement=placement, model=model, server=server, server_name=server.name, gpus=len(devices[server.pk]),
                reservation=reservation, state_changed_at=now,
                state=TargetState.READY if keep_loaded else TargetState.PENDING,
                loaded_at=old.loaded_at if keep_loaded else None,
                load_seconds=old.load_seconds if keep_loaded else None,
            )
            if old is not None:
                PlacementTarget.objects.filter(pk=old.pk).update(replaced_by=target)
        for old_id in sorted(replaced_placements):
            close_if_empty(actor, old_id, reason=f"replaced by placement {placement.pk}")
        audit_record(
            actor=actor, action="placement.create", obj=placement, team=model.team,
            after={
                "versions": numbers,
                "config_revision": config.revision if config else None,
                "servers": [s.name for s in servers],
                "gpus": {s.name: len(devices[s.pk]) for s in servers},
                "devices": {s.name: devices[s.pk] for s in servers},
                "replaced_placements": sorted(replaced_placements),
            },
        )
        enqueue("placements.apply_placement", placement.pk)
    return placement, True


def placement_retry(*, actor: Actor, placement: Placement) -> list[PlacementTarget]:
    """Send failed and stuck targets back to pending and queue the apply. Returns those moved."""
    authorize(actor, placement.model.team, Role.DEPLOYER)
    if not placement.is_active:
        raise Conflict("placement", f"Placement {placement.pk} was removed; create a new placement instead.")
    moved = []
    with transaction.atomic():
        for target in targets(placement=placement, state__in=RETRYABLE_STATES):
            changed = PlacementTarget.objects.filter(pk=target.pk, state=target.state, attempt=target.attempt).update(
                state=TargetState.PENDING, state_changed_at=timezone.now(), attempt=F("attempt") + 1
            )
            if changed:
                audit_record(actor=actor, action="placement.target.retry", obj=target, team=placement.model.team,
                             before={"state": target.state, "error": target.error}, after={"state": TargetState.PENDING})
                moved.append(target)
        if moved:
            enqueue("placements.apply_placement", placement.pk)
    return moved


def placement_remove(*, actor: Actor, placement: Placement) -> Placement:
    """Stop wanting the placement: its targets go to UNLOADING and the unload task takes over.
    GPUs are released as each server confirms. Removing twice is a no-op."""
    authorize(actor, placement.model.team, Role.DEPLOYER)
    team = placement.model.team
    with transaction.atomic():
        now = timezone.now()
        if Placement.objects.filter(pk=placement.pk, removed_at__isnull=True).update(removed_at=now):
            audit_record(actor=actor, action="placement.remove", obj=placement, team=team,
                         before={"removed_at": None}, after={"removed_at": now.isoformat()})
        moving = 0
        for target in targets(placement=placement).exclude(state__in=[TargetState.REMOVED, TargetState.UNLOADING]):
            if target.server_id is None:
                retire(actor, target, reason="server deregistered", team=team, action="placement.target.removed")
            elif claim(target, to=TargetState.UNLOADING, actor=actor, action="placement.target.unload"):
                moving += 1
        if moving:
            enqueue("placements.unload_placement", placement.pk)
    placement.refresh_from_db()
    return placement
