"""The reconciler: compare every active target with what its server reports, and repair.

Observation is I/O in parallel; the decision for each target is ``placements.reconcile.decide``
(pure); carrying it out is a compare-and-set with its audit event (``state``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.common.locks import cache_lock
from controlplane.common.tasks import enqueue
from controlplane.fleet.triton_client import TritonClient, TritonError
from controlplane.placements import conf, drift
from controlplane.placements.models import (
    ACTIVE_STATES,
    Drift,
    PlacementTarget,
    ReconcileRun,
    TargetState,
)
from controlplane.placements.reconcile import Action, decide
from controlplane.placements.services.execution import parallel, run_loads, run_unloads
from controlplane.placements.services.state import (
    Claim,
    claim,
    close_if_empty,
    record_removed,
    retire,
    targets,
    transition,
    unload_claim,
)


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


def reconcile_fleet(*, actor: Actor | None = None) -> dict:
    """Compare every active target with its server and act (see ``placements.reconcile``):

    - READY but missing (Triton restarted: overrides are not persisted), wrong version or wrong
      config: reload with our config;
    - LOADING/STUCK/PENDING and Triton reports it in sync: READY;
    - LOADING or UNLOADING on Triton for longer than the stuck timeout: STUCK, reported;
    - PENDING past the grace period (its task was lost), or LOADING whose lease ran out with
      nothing loading on Triton (its worker died before Triton had the request): apply again;
    - UNLOADING and gone from Triton: REMOVED, GPUs released;
    - FAILED: drift recorded only; retrying is a person's decision.

    Models that no placement wants are reported as extra and left alone.
    """
    actor = actor or Actor.system()
    with cache_lock("placements:reconcile", ttl=conf.load_timeout() + 60) as acquired:
        if not acquired:
            return {"skipped": "another reconcile is running"}
        return _reconcile(actor)


def reconcile_soon() -> bool:
    """Ask a worker to reconcile now rather than at the next beat (a load lost its worker, and a
    rollout waits on it). At most once per lease period, however often it is asked. Returns
    whether this call queued it."""
    key = f"reconcile-requested:{connection.settings_dict.get('NAME')}"
    if not cache.add(key, 1, timeout=int(conf.LEASE_S)):
        return False
    enqueue("placements.reconcile_fleet")
    return True


def _reconcile(actor: Actor) -> dict:
    started = timezone.now()
    report: dict[str, list] = {k: [] for k in ("reapplied", "adopted", "stuck", "extra", "unreachable", "removed", "drift")}
    active = list(targets(state__in=ACTIVE_STATES).select_related("server__pool"))
    for target in [t for t in active if t.server_id is None]:
        with transaction.atomic():
            if retire(actor, target, reason="server deregistered", team=target.model.team, action="placement.target.removed"):
                close_if_empty(actor, target.placement_id, reason="its servers were deregistered")
                report["removed"].append({"target": target.pk, "server": target.server_name, "note": "server deregistered"})
    by_server: dict[int, list[PlacementTarget]] = defaultdict(list)
    for target in active:
        if target.server_id is not None:
            by_server[target.server_id].append(target)
    servers = [ts[0].server for ts in by_server.values()]
    observations = dict(zip(
        [s.pk for s in servers],
        parallel(lambda s: _observe(s.http_url, {t.model.triton_name for t in by_server[s.pk]}), servers),
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
        else:
            checked.extend(t.pk for t in mine)
            for extra in drift.extras(seen.index, {t.model.triton_name for t in mine}):
                report["extra"].append({"server": server.name, **extra})
        grouped = drift.rows_by_name(seen.index)
        for target in mine:
            name = target.model.triton_name
            rows = grouped.get(name, [])
            if seen.error:
                value, detail = Drift.UNREACHABLE, seen.error
            else:
                value, detail = drift.classify(
                    versions=target.placement.versions, config=target.placement.rendered_config, rows=rows,
                    effective=seen.configs.get(name), config_error=seen.config_errors.get(name, ""),
                )
            decision = decide(
                state=target.state, placement_active=target.placement.is_active, reachable=not seen.error,
                drift=value, loaded=drift.is_loaded(rows), busy=drift.is_busy(rows),
                age=(now - target.state_changed_at).total_seconds(), stuck_after=stuck_after, grace=grace,
                lease_expired=target.lease_expired(now, fallback_s=stuck_after),
            )
            entry = {"target": target.pk, "placement": target.placement_id, "server": server.name, "model": name}
            if decision.record_drift:
                if value != target.drift and value and not seen.error:
                    report["drift"].append(entry | {"drift": value, "detail": detail})
                _set_drift(target, value, detail, actor)
            _carry_out(decision.action, target, actor, entry=entry, report=report, loads=loads, unloads=unloads,
                       value=value, detail=detail, rows=rows, now=now)

    PlacementTarget.objects.filter(pk__in=checked).update(last_checked_at=now)
    results = run_loads(loads, actor)
    for item in report["reapplied"]:
        item["result"] = PlacementTarget.objects.filter(pk=item["target"]).values_list("state", flat=True).first()
    run_unloads(unloads, actor)
    ReconcileRun.objects.create(started_at=started, finished_at=timezone.now(), servers=len(servers),
                                targets=len(active), report=report | {"loads": results})
    _prune_runs()
    return report


def _carry_out(action: Action, target: PlacementTarget, actor: Actor, *, entry: dict, report: dict, loads: list,
               unloads: list, value: str, detail: str, rows: list[dict], now) -> None:
    """One decision, done with a compare-and-set; loads and unloads are collected to run in parallel."""
    stuck_after, grace = conf.stuck_seconds(), conf.pending_grace()
    if action == Action.REMOVE:
        if record_removed(target.pk, None, actor, reason="gone from the server's repository index"):
            report["removed"].append(entry)
    elif action in (Action.STUCK_UNLOADING, Action.STUCK_LOADING):
        error = f"{drift._states(rows)} for more than {stuck_after:g} s."
        why = "unload timed out" if action == Action.STUCK_UNLOADING else "load timed out"
        if transition(target, TargetState.STUCK, actor, error=error, reason=why):
            report["stuck"].append(entry | {"error": error})
    elif action == Action.UNLOAD_AGAIN:
        unloads.append(unload_claim(target))  # the unload was lost: send it again
    elif action == Action.ADOPT:
        if transition(target, TargetState.READY, actor, error="", reason="Triton reports it READY with our config",
                      loaded_at=now, drift=Drift.NONE, drift_detail=""):
            report["adopted"].append(entry)
    elif action == Action.REPORT_STUCK:
        report["stuck"].append(entry | {"error": target.error})
    elif action.loads:
        verb, reason, note = {
            Action.REAPPLY_DRIFT: ("placement.target.reapply", f"{value}: {detail}", detail),
            Action.REAPPLY_ABANDONED: ("placement.target.reapply", "the load never finished (its worker stopped)",
                                       "load never finished"),
            Action.LOAD_PENDING: ("placement.target.load", f"still pending after {grace:g} s", "pending"),
        }[action]
        claimed = claim(target, to=TargetState.LOADING, actor=actor, action=verb, reason=reason)
        if claimed:
            loads.append(claimed)
            report["reapplied"].append(entry | {"drift": value, "detail": note})


def _prune_runs() -> None:
    cutoff = ReconcileRun.objects.order_by("-id").values_list("id", flat=True)[conf.RECONCILE_RUNS_KEPT:conf.RECONCILE_RUNS_KEPT + 1]
    if cutoff:
        ReconcileRun.objects.filter(id__lte=cutoff[0]).delete()
