"""Placements: create, apply, retry, remove and reconcile.

Triton I/O runs outside transactions, in parallel across servers. Each recorded result is a
short transaction that compare-and-sets the target's state (and its ``attempt``, so a late
answer from an older attempt is dropped) and writes the audit event with it. Every step can run
twice: a second run finds nothing left in the state it acts on.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from controlplane.accounts.access import authorize
from controlplane.accounts.models import Role
from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.audit.services import audit_record
from controlplane.common.errors import Conflict
from controlplane.fleet.models import Server, ServerStatus
from controlplane.fleet.triton_client import TritonClient, TritonError, TritonRequestError, TritonUnavailable
from controlplane.placements import conf, drift
from controlplane.placements.insight import BatchingInsight, StatsSample, batching_insight
from controlplane.placements.models import (
    ACTIVE_STATES,
    RETRYABLE_STATES,
    Drift,
    Placement,
    PlacementTarget,
    ReconcileRun,
    TargetState,
)
from controlplane.quotas.instance_groups import gpus_for_instance_groups
from controlplane.quotas.models import ReservationKind
from controlplane.quotas.services import QuotaExceeded, quota_release, quota_reserve
from controlplane.registry.models import Model, ModelVersion, VersionStatus
from controlplane.serving.validation import validate_spec
from controlplane.serving.models import ServingConfig
from controlplane.serving.render import render_model_config
from controlplane.serving.selectors import serving_config_current

log = logging.getLogger(__name__)

REAPPLY_DRIFTS = (Drift.MISSING, Drift.WRONG_VERSION, Drift.WRONG_CONFIG)
# Drift means something only for targets that are settled; a target in flight is expected to differ.
SHOWS_DRIFT = (TargetState.READY, TargetState.FAILED, TargetState.STUCK)


# -- create ------------------------------------------------------------------------------------

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


def gpus_per_server(rendered: dict, server: Server, version_count: int) -> int:
    """GPUs the placement takes on one server. Triton starts every instance group once per loaded
    version, so two versions side by side take twice the GPUs of one."""
    per_version = gpus_for_instance_groups(rendered.get("instance_group"), server_has_gpus=server.gpu_count > 0)
    return per_version * version_count


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
    needed = {s.pk: gpus_per_server(rendered, s, len(numbers)) for s in servers}

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
        reserved = 0
        replaced_placements = set()
        for server in servers:
            old = current.get(server.pk)
            keep_loaded = (
                old is not None and old.state == TargetState.READY and old.placement.rendered_config == rendered
            )
            if old is not None:
                _retire(actor, old, reason=f"replaced by placement {placement.pk}", team=model.team)
                replaced_placements.add(old.placement_id)
            reservation = None
            if needed[server.pk]:
                try:
                    reservation = quota_reserve(
                        actor=actor, team=model.team, gpus=needed[server.pk], kind=ReservationKind.PLACEMENT,
                        version=version_rows[-1], server=server, holder=f"placement {placement.pk}",
                        description=f"{_label(model, numbers)} on {server.name}",
                    )
                except QuotaExceeded as refused:
                    total = sum(needed.values())
                    raise QuotaExceeded(
                        team=model.team, limit=refused.limit, held=refused.held - reserved, needed=total,
                        subject=f"{_label(model, numbers)} on {len(servers)} server{'s' if len(servers) != 1 else ''}",
                    ) from None
                reserved += needed[server.pk]
            target = PlacementTarget.objects.create(
                placement=placement, model=model, server=server, server_name=server.name, gpus=needed[server.pk],
                reservation=reservation, state_changed_at=now,
                state=TargetState.READY if keep_loaded else TargetState.PENDING,
                loaded_at=old.loaded_at if keep_loaded else None,
                load_seconds=old.load_seconds if keep_loaded else None,
            )
            if old is not None:
                PlacementTarget.objects.filter(pk=old.pk).update(replaced_by=target)
        for old_id in sorted(replaced_placements):
            _close_if_empty(actor, old_id, reason=f"replaced by placement {placement.pk}")
        audit_record(
            actor=actor, action="placement.create", obj=placement, team=model.team,
            after={
                "versions": numbers,
                "config_revision": config.revision if config else None,
                "servers": [s.name for s in servers],
                "gpus": {s.name: needed[s.pk] for s in servers},
                "replaced_placements": sorted(replaced_placements),
            },
        )
        transaction.on_commit(lambda: _enqueue("apply_placement", placement.pk))
    return placement, True


def _retire(actor: Actor, target: PlacementTarget, *, reason: str, team, action: str = "placement.target.replace") -> bool:
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
    return True


def _close_if_empty(actor: Actor, placement_id: int, *, reason: str) -> None:
    """A placement with no active target left is over: mark it removed."""
    if PlacementTarget.objects.filter(placement_id=placement_id, state__in=ACTIVE_STATES).exists():
        return
    now = timezone.now()
    if Placement.objects.filter(pk=placement_id, removed_at__isnull=True).update(removed_at=now):
        placement = Placement.objects.select_related("model__team").get(pk=placement_id)
        audit_record(actor=actor, action="placement.remove", obj=placement, team=placement.model.team,
                     before={"removed_at": None}, after={"removed_at": now.isoformat()}, reason=reason)


def _enqueue(task_name: str, *args) -> None:
    """Queue a task after commit. If the broker is down, the reconciler picks the work up."""
    from workers import placements as tasks

    try:
        getattr(tasks, task_name).delay(*args)
    except Exception as exc:  # noqa: BLE001 - the change itself is committed
        log.warning("could not queue %s%s: %s", task_name, args, exc)


# -- loading -------------------------------------------------------------------------------------

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


def _claim(target: PlacementTarget, *, to: str, actor: Actor, action: str, reason: str = "") -> Claim | None:
    """Move a target to LOADING or UNLOADING if nobody changed it since it was read; audited."""
    now = timezone.now()
    with transaction.atomic():
        changed = PlacementTarget.objects.filter(pk=target.pk, state=target.state, attempt=target.attempt).update(
            state=to, attempt=F("attempt") + 1, state_changed_at=now, error=""
        )
        if not changed:
            return None
        audit_record(actor=actor, action=action, obj=target, team=target.model.team,
                     before={"state": target.state}, after={"state": to}, reason=reason)
    placement = target.placement
    return Claim(
        target_id=target.pk, attempt=target.attempt + 1, url=target.server.http_url, server_name=target.server_name,
        name=target.model.triton_name, versions=tuple(placement.versions), config=placement.rendered_config, reason=reason,
    )


def _reasons(client: TritonClient, name: str, versions: Iterable[int]) -> str:
    """What the repository index says about a model after a failed load (per-version reasons)."""
    try:
        rows = [r for r in client.index() if r["name"] == name]
    except TritonError:
        return ""
    notes = []
    for row in rows:
        reason = (row.get("reason") or "").strip()
        if row.get("state") == drift.READY:
            notes.append(f"v{row['version']} is still READY from an earlier load" + (f" ({reason})" if reason else ""))
        elif reason and reason != "unloaded" and drift._version(row) in set(versions):
            notes.append(f"v{row['version']} {row.get('state')}: {reason}")
    return "\n".join(notes)


def _load_one(claim: Claim) -> Outcome:
    """Load on one server and wait until every wanted version is READY (per model: the server's
    own readiness flips to false while any other model unloads or after any failed load)."""
    timeout = conf.load_timeout()
    deadline = time.monotonic() + timeout
    client = TritonClient(claim.url, timeout=conf.call_timeout(), load_timeout=timeout)
    try:
        seconds = client.load(claim.name, config=claim.config)
    except TritonRequestError as exc:
        notes = _reasons(client, claim.name, claim.versions)
        text = exc.message.strip()
        if notes and notes not in text:
            text = f"{text}\n{notes}"
        return Outcome(TargetState.FAILED, error=text)
    except TritonUnavailable as exc:
        # Triton keeps loading when the caller gives up; then the reconciler finishes the story.
        try:
            rows = [r for r in client.index() if r["name"] == claim.name]
        except TritonError:
            rows = []
        if drift.versions_in(rows, drift.LOADING):
            return Outcome(TargetState.LOADING, error=f"Still LOADING after {timeout:g} s; the reconciler marks it ready or stuck.")
        return Outcome(TargetState.FAILED, error=str(exc))
    except TritonError as exc:
        return Outcome(TargetState.FAILED, error=str(exc))
    pending = list(claim.versions)
    while True:
        try:
            pending = [v for v in pending if not client.model_ready(claim.name, v)]
        except TritonError as exc:
            return Outcome(TargetState.FAILED, seconds, f"Loaded, but readiness could not be read: {exc}")
        if not pending:
            return Outcome(TargetState.READY, seconds)
        if time.monotonic() >= deadline:
            notes = _reasons(client, claim.name, pending)
            names = ", ".join(f"v{v}" for v in pending)
            return Outcome(TargetState.FAILED, seconds, f"Loaded, but {names} not READY within {timeout:g} s.\n{notes}".strip())
        time.sleep(0.2)


def _record_load(claim: Claim, outcome: Outcome, actor: Actor) -> str | None:
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
    return outcome.state


def _fan_out(fn: Callable, items: list) -> list:
    if not items:
        return []
    workers = max(1, min(conf.concurrency(), len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="placement") as pool:
        return list(pool.map(fn, items))


def _run_loads(claims: list[Claim], actor: Actor) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for claim, outcome in zip(claims, _fan_out(_load_one, claims)):
        state = _record_load(claim, outcome, actor)
        counts[str(state or "stale")] += 1
    return dict(counts)


def _targets(**filters):
    return PlacementTarget.objects.select_related("placement", "model__team", "server", "reservation").filter(**filters)


def placement_apply(*, placement_id: int, actor: Actor | None = None) -> dict[str, int]:
    """Load every pending target of a placement, in parallel, and record each result.

    Also takes over targets left LOADING past the load timeout by a worker that died. Returns a
    count per resulting state; an empty dict when there was nothing to do.
    """
    actor = actor or Actor.system(Source.WORKER)
    placement = Placement.objects.filter(pk=placement_id, removed_at__isnull=True).first()
    if placement is None:
        return {}
    stale = timezone.now() - timedelta(seconds=conf.load_timeout() + 30)
    candidates = _targets(placement_id=placement_id).filter(
        Q(state=TargetState.PENDING) | Q(state=TargetState.LOADING, state_changed_at__lt=stale)
    ).exclude(server=None)
    claims = [c for t in candidates if (c := _claim(t, to=TargetState.LOADING, actor=actor, action="placement.target.load"))]
    return _run_loads(claims, actor)


def placement_retry(*, actor: Actor, placement: Placement) -> list[PlacementTarget]:
    """Send failed and stuck targets back to pending and queue the apply. Returns those moved."""
    authorize(actor, placement.model.team, Role.DEPLOYER)
    if not placement.is_active:
        raise Conflict("placement", f"Placement {placement.pk} was removed; create a new placement instead.")
    moved = []
    with transaction.atomic():
        for target in _targets(placement=placement, state__in=RETRYABLE_STATES):
            changed = PlacementTarget.objects.filter(pk=target.pk, state=target.state, attempt=target.attempt).update(
                state=TargetState.PENDING, state_changed_at=timezone.now(), attempt=F("attempt") + 1
            )
            if changed:
                audit_record(actor=actor, action="placement.target.retry", obj=target, team=placement.model.team,
                             before={"state": target.state, "error": target.error}, after={"state": TargetState.PENDING})
                moved.append(target)
        if moved:
            transaction.on_commit(lambda: _enqueue("apply_placement", placement.pk))
    return moved


# -- removal -------------------------------------------------------------------------------------

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
        for target in _targets(placement=placement).exclude(state__in=[TargetState.REMOVED, TargetState.UNLOADING]):
            if target.server_id is None:
                _retire(actor, target, reason="server deregistered", team=team, action="placement.target.removed")
            elif _claim(target, to=TargetState.UNLOADING, actor=actor, action="placement.target.unload"):
                moving += 1
        if moving:
            transaction.on_commit(lambda: _enqueue("unload_placement", placement.pk))
    placement.refresh_from_db()
    return placement


def _unload_one(claim: Claim) -> Outcome:
    client = TritonClient(claim.url, timeout=conf.call_timeout(), load_timeout=conf.call_timeout() * 6)
    try:
        client.unload(claim.name)
    except TritonUnavailable as exc:
        # In explicit mode a restarted Triton has nothing loaded, so the GPUs are free either way;
        # if this server comes back still serving it, the reconciler reports it as extra.
        return Outcome(TargetState.REMOVED, error=f"Server unreachable, released anyway: {exc}")
    except TritonError as exc:
        return Outcome(TargetState.UNLOADING, error=str(exc))
    deadline = time.monotonic() + conf.unload_wait()
    while True:
        try:
            rows = [r for r in client.index() if r["name"] == claim.name]
        except TritonError as exc:
            return Outcome(TargetState.UNLOADING, error=f"Unload sent; index unreadable: {exc}")
        if not drift.is_loaded(rows):
            return Outcome(TargetState.REMOVED)
        if time.monotonic() >= deadline:
            return Outcome(TargetState.UNLOADING, error=f"Still {drift._states(rows)} after {conf.unload_wait():g} s.")
        time.sleep(0.2)


def _record_removed(target_id: int, attempt: int | None, actor: Actor, *, note: str = "", reason: str = "") -> bool:
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


def _run_unloads(claims: list[Claim], actor: Actor) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for claim, outcome in zip(claims, _fan_out(_unload_one, claims)):
        if outcome.state == TargetState.REMOVED:
            done = _record_removed(claim.target_id, claim.attempt, actor, note=outcome.error, reason=claim.reason)
            counts["removed" if done else "stale"] += 1
        else:
            PlacementTarget.objects.filter(pk=claim.target_id, attempt=claim.attempt).update(error=outcome.error)
            counts["unloading"] += 1
    return dict(counts)


def _unload_claim(target: PlacementTarget) -> Claim:
    """An unload needs no state change to claim: the target is UNLOADING already."""
    return Claim(target_id=target.pk, attempt=target.attempt, url=target.server.http_url, server_name=target.server_name,
                 name=target.model.triton_name, versions=tuple(target.placement.versions), config={})


def placement_unload(*, placement_id: int, actor: Actor | None = None) -> dict[str, int]:
    """Unload every UNLOADING target of a placement, in parallel; REMOVED once Triton confirms."""
    actor = actor or Actor.system(Source.WORKER)
    targets = _targets(placement_id=placement_id, state=TargetState.UNLOADING).exclude(server=None)
    return _run_unloads([_unload_claim(t) for t in targets], actor)


# -- reconciler ----------------------------------------------------------------------------------

@contextmanager
def _lock(name: str, ttl: float):
    """A best-effort lock in the shared cache (Redis in production), scoped to this database."""
    key = f"placements:{name}:{connection.settings_dict.get('NAME')}"
    token = uuid.uuid4().hex
    acquired = cache.add(key, token, timeout=int(ttl) + 1)
    try:
        yield acquired
    finally:
        if acquired and cache.get(key) == token:
            cache.delete(key)


@dataclass
class Observation:
    """What one server reported: its index and the effective config of each READY wanted model."""

    index: list[dict] = field(default_factory=list)
    configs: dict[str, dict] = field(default_factory=dict)
    config_errors: dict[str, str] = field(default_factory=dict)
    error: str = ""


def _observe(url: str, names: set[str]) -> Observation:
    client = TritonClient(url, timeout=conf.call_timeout())
    try:
        index = client.index()
    except TritonError as exc:
        return Observation(error=str(exc))
    seen = Observation(index=index)
    grouped = drift.rows_by_name(index)
    for name in sorted(names):
        if drift.versions_in(grouped.get(name, []), drift.READY):
            try:
                seen.configs[name] = client.model_config(name)
            except TritonError as exc:
                seen.config_errors[name] = str(exc)
    return seen


def _set_drift(target: PlacementTarget, value: str, detail: str, actor: Actor) -> None:
    """Store what the reconciler saw; a change of drift (not of its detail) is audited."""
    if (value, detail) == (target.drift, target.drift_detail):
        return
    with transaction.atomic():
        PlacementTarget.objects.filter(pk=target.pk).update(drift=value, drift_detail=detail)
        if value != target.drift:
            audit_record(actor=actor, action="placement.target.drift", obj=target, team=target.model.team,
                         before={"drift": target.drift}, after={"drift": value, "detail": detail})
    target.drift, target.drift_detail = value, detail


def _transition(target: PlacementTarget, to: str, actor: Actor, *, error: str, reason: str, **extra) -> bool:
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
    return bool(changed)


def reconcile_fleet(*, actor: Actor | None = None) -> dict:
    """Compare every active target with its server and act:

    - READY but missing (Triton restarted: overrides are not persisted), wrong version or wrong
      config: reload with our config;
    - LOADING/STUCK/PENDING and Triton reports it in sync: READY;
    - LOADING or UNLOADING on Triton for longer than the stuck timeout: STUCK, reported;
    - PENDING past the grace period (its task was lost), or LOADING past the stuck timeout with
      nothing loading on Triton (its worker died): apply again;
    - UNLOADING and gone from Triton: REMOVED, GPUs released;
    - FAILED: drift recorded only; retrying is a person's decision.

    Models that no placement wants are reported as extra and left alone: they may be serving
    traffic someone loaded by hand, and unloading on a guess would be an outage.
    """
    actor = actor or Actor.system()
    with _lock("reconcile", ttl=conf.load_timeout() + 60) as acquired:
        if not acquired:
            return {"skipped": "another reconcile is running"}
        return _reconcile(actor)


def _reconcile(actor: Actor) -> dict:
    started = timezone.now()
    report: dict[str, list] = {k: [] for k in ("reapplied", "adopted", "stuck", "extra", "unreachable", "removed", "drift")}
    targets = list(_targets(state__in=ACTIVE_STATES).select_related("server__pool"))
    for target in [t for t in targets if t.server_id is None]:
        with transaction.atomic():
            if _retire(actor, target, reason="server deregistered", team=target.model.team, action="placement.target.removed"):
                _close_if_empty(actor, target.placement_id, reason="its servers were deregistered")
                report["removed"].append({"target": target.pk, "server": target.server_name, "note": "server deregistered"})
    by_server: dict[int, list[PlacementTarget]] = defaultdict(list)
    for target in targets:
        if target.server_id is not None:
            by_server[target.server_id].append(target)
    servers = [ts[0].server for ts in by_server.values()]
    observations = dict(zip(
        [s.pk for s in servers],
        _fan_out(lambda s: _observe(s.http_url, {t.model.triton_name for t in by_server[s.pk]}), servers),
    ))

    loads: list[Claim] = []
    unloads: list[Claim] = []
    checked: list[int] = []
    now = timezone.now()
    stuck_after, grace = conf.stuck_seconds(), conf.pending_grace()
    for server in servers:
        seen = observations[server.pk]
        mine = by_server[server.pk]
        if seen.error:
            report["unreachable"].append({"server": server.name, "error": seen.error})
            for target in mine:
                if target.state in SHOWS_DRIFT:
                    _set_drift(target, Drift.UNREACHABLE, seen.error, actor)
            continue
        checked.extend(t.pk for t in mine)
        grouped = drift.rows_by_name(seen.index)
        for extra in drift.extras(seen.index, {t.model.triton_name for t in mine}):
            report["extra"].append({"server": server.name, **extra})
        for target in mine:
            name = target.model.triton_name
            rows = grouped.get(name, [])
            age = (now - target.state_changed_at).total_seconds()
            entry = {"target": target.pk, "placement": target.placement_id, "server": server.name, "model": name}
            if target.state == TargetState.UNLOADING or (target.state == TargetState.STUCK and not target.placement.is_active):
                if not drift.is_loaded(rows):
                    if _record_removed(target.pk, None, actor, reason="gone from the server's repository index"):
                        report["removed"].append(entry)
                elif drift.is_busy(rows) and age > stuck_after and target.state == TargetState.UNLOADING:
                    error = f"{drift._states(rows)} for more than {stuck_after:g} s."
                    if _transition(target, TargetState.STUCK, actor, error=error, reason="unload timed out"):
                        report["stuck"].append(entry | {"error": error})
                elif not drift.is_busy(rows) and age > grace:
                    unloads.append(_unload_claim(target))  # the unload was lost: send it again
                continue

            value, detail = drift.classify(
                versions=target.placement.versions, config=target.placement.rendered_config, rows=rows,
                effective=seen.configs.get(name), config_error=seen.config_errors.get(name, ""),
            )
            if target.state in SHOWS_DRIFT:
                if value != target.drift and value:
                    report["drift"].append(entry | {"drift": value, "detail": detail})
                _set_drift(target, value, detail, actor)
            busy = drift.is_busy(rows)
            if target.state == TargetState.READY:
                if value in REAPPLY_DRIFTS and not busy:
                    claim = _claim(target, to=TargetState.LOADING, actor=actor, action="placement.target.reapply",
                                   reason=f"{value}: {detail}")
                    if claim:
                        loads.append(claim)
                        report["reapplied"].append(entry | {"drift": value, "detail": detail})
            elif target.state in (TargetState.LOADING, TargetState.STUCK, TargetState.PENDING) and value == Drift.NONE and not busy:
                if _transition(target, TargetState.READY, actor, error="", reason="Triton reports it READY with our config",
                               loaded_at=now, drift=Drift.NONE, drift_detail=""):
                    report["adopted"].append(entry)
            elif target.state == TargetState.LOADING and age > stuck_after:
                if busy:
                    error = f"{drift._states(rows)} for more than {stuck_after:g} s."
                    if _transition(target, TargetState.STUCK, actor, error=error, reason="load timed out"):
                        report["stuck"].append(entry | {"error": error})
                else:
                    claim = _claim(target, to=TargetState.LOADING, actor=actor, action="placement.target.reapply",
                                   reason="the load never finished (its worker stopped)")
                    if claim:
                        loads.append(claim)
                        report["reapplied"].append(entry | {"drift": value, "detail": "load never finished"})
            elif target.state == TargetState.PENDING and age > grace and not busy:
                claim = _claim(target, to=TargetState.LOADING, actor=actor, action="placement.target.load",
                               reason=f"still pending after {grace:g} s")
                if claim:
                    loads.append(claim)
                    report["reapplied"].append(entry | {"drift": value, "detail": "pending"})
            elif target.state == TargetState.STUCK:
                report["stuck"].append(entry | {"error": target.error})

    PlacementTarget.objects.filter(pk__in=checked).update(last_checked_at=now)
    results = _run_loads(loads, actor)
    for item in report["reapplied"]:
        item["result"] = PlacementTarget.objects.filter(pk=item["target"]).values_list("state", flat=True).first()
    _run_unloads(unloads, actor)
    report_counts = {"loads": results}
    ReconcileRun.objects.create(started_at=started, finished_at=timezone.now(), servers=len(servers),
                                targets=len(targets), report=report | report_counts)
    _prune_runs()
    return report


def _prune_runs() -> None:
    cutoff = ReconcileRun.objects.order_by("-id").values_list("id", flat=True)[conf.RECONCILE_RUNS_KEPT:conf.RECONCILE_RUNS_KEPT + 1]
    if cutoff:
        ReconcileRun.objects.filter(id__lte=cutoff[0]).delete()


# -- live view and batching insight ----------------------------------------------------------------

@dataclass(frozen=True)
class LiveTarget:
    """What a server says right now about one target: its versions and batching."""

    states: list[dict]
    insight: BatchingInsight | None = None
    error: str = ""


def _stats_key(target: PlacementTarget) -> str:
    """Per load: Triton's counters start again at every load, so must the samples."""
    loaded = target.loaded_at.timestamp() if target.loaded_at else 0
    return f"placements:stats:{connection.settings_dict.get('NAME')}:{target.pk}:{loaded}"


def _live_one(args: tuple[str, str, StatsSample | None]) -> tuple[LiveTarget, StatsSample | None]:
    url, name, previous = args
    client = TritonClient(url, timeout=conf.live_timeout(), connect_timeout=min(conf.live_timeout(), 1.0))
    try:
        rows = [r for r in client.index() if r["name"] == name and r.get("state")]
        if not drift.versions_in(rows, drift.READY):
            return LiveTarget(states=rows), None
        current = StatsSample.from_triton(client.stats(name), at=time.time())
        if previous is None or previous.at >= current.at:
            time.sleep(conf.LIVE_WINDOW_SECONDS)  # no earlier sample: make a short window
            previous, current = current, StatsSample.from_triton(client.stats(name), at=time.time())
    except TritonError as exc:
        return LiveTarget(states=[], error=str(exc)), None
    return LiveTarget(states=rows, insight=batching_insight(current, previous)), current


def placement_live(placement: Placement) -> dict[int, LiveTarget]:
    """Live state and batching insight of each active target, fetched in parallel with short
    timeouts. The last sample per target is cached, so each refresh measures since the last one."""
    targets = [t for t in placement.targets.all() if t.is_active and t.server_id is not None]
    jobs = []
    for target in targets:
        cached = cache.get(_stats_key(target))
        previous = StatsSample(**cached) if isinstance(cached, dict) else None
        jobs.append((target.server.http_url, placement.model.triton_name, previous))
    live: dict[int, LiveTarget] = {}
    for target, (result, sample) in zip(targets, _fan_out(_live_one, jobs)):
        if sample is not None:
            cache.set(_stats_key(target), sample.as_dict(), timeout=600)
        live[target.pk] = result
    return live
