"""Carrying a deployment out: what a worker does in each state, then the event it leads to.

`deployment_advance` is the one entry point (the `deployments.advance` task, and the reconciler
through the `deployments.tick` beat task). It drives one deployment until it has to wait for
longer than a moment, then leaves a `next_run_at` for the tick to come back.

Every handler is safe to run twice: it looks at what is already done (a placement that exists,
targets that are READY, a routing table already published) before doing anything, and every
transition is a compare-and-set, so a worker that died anywhere is simply replaced by the next
one. Triton and Prometheus I/O happens outside transactions.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.common.fanout import fan_out
from controlplane.common.locks import cache_lock
from controlplane.common.tasks import enqueue
from controlplane.deployments import verdicts
from controlplane.deployments.services import commands
from controlplane.deployments.services.endpoint_moves import promotion_write
from controlplane.deployments.machine import CAN_ROLL_BACK, WORKER_STATES, Event, Refused, State
from controlplane.deployments.models import Deployment, GateEvaluation, PlacementMode
from controlplane.deployments.spec import Gates
from controlplane.deployments.services.transitions import apply_event
from controlplane.endpoints.publication import publish_if_changed
from controlplane.endpoints.replicas import all_replicas_serve
from controlplane.fleet.models import Server, ServerStatus
from controlplane.fleet.triton_client import TritonClient, TritonError
from controlplane.metrics import custom_gates, queries
from controlplane.metrics.client import MetricsError, client_from_settings
from controlplane.placements import conf as placement_conf
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.placements.services import placement_apply, placement_create, placement_remove, reconcile_soon
from controlplane.registry.models import VersionStatus

log = logging.getLogger(__name__)

GREEN, BLUE = "green", "blue"  # the variant names the routing table gives them during a rollout
LOCK_TTL_S = 10  # a driver that died frees its deployment after this long (a longer step is still safe: every step is idempotent)
BUDGET_S = 8  # one task drives at most this long, then hands over to a fresh one (and refreshes the lock)
INLINE_WAIT_S = 1.0  # shorter waits are slept through; longer ones go back to the tick
REPLICA_POLL_S = 0.05
PROVISION_RETRIES = 1  # a failed green load is retried once before the rollout fails
WORKER = Actor.system(Source.WORKER)


@dataclass
class Next:
    """A handler's answer: an event to apply (with its changes), or a wait."""

    event: Event | None = None
    wait_s: float = 0.0
    status: str = ""  # what it waits for, shown to people
    reason: str = ""
    changes: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    side_effects: Callable[[Deployment], object] | None = None  # runs in the transition's transaction


def _load(deployment_id: int) -> Deployment | None:
    return Deployment.objects.select_related(
        "team", "endpoint__team", "model__team", "blue_version", "green_version").filter(pk=deployment_id).first()


def deployment_advance(deployment_id: int, *, budget_s: float = BUDGET_S) -> str | None:
    """Drive one deployment as far as it goes without a long wait. Returns its state when it stops
    (None when another worker drives it, or it is gone)."""
    with cache_lock(f"deployment-advance-{deployment_id}", ttl=LOCK_TTL_S) as held:
        if not held:
            return None
        stop = time.monotonic() + budget_s
        while True:
            d = _load(deployment_id)
            if d is None:
                return None
            if d.state not in WORKER_STATES and not _deadline_due(d):
                return d.state
            if time.monotonic() >= stop:
                _wait(d, 0, d.status_text)
                return d.state
            step = _deadline_step(d) if _deadline_due(d) else _handle(d)
            if step.event is not None:
                try:
                    apply_event(d, step.event, actor=WORKER, reason=step.reason, changes=step.changes,
                                detail=step.detail, expect_step=d.step_index, side_effects=step.side_effects)
                except Refused:
                    log.info("deployment %s: %s no longer allows %s", d.pk, d.state, step.event)
                continue
            if step.wait_s <= INLINE_WAIT_S:
                if step.status and step.status != d.status_text:
                    Deployment.objects.filter(pk=d.pk, state=d.state).update(status_text=step.status)
                time.sleep(step.wait_s)
                continue
            _wait(d, step.wait_s, step.status)
            return d.state


HAND_OVER_S = 120  # waits up to this long come back as a task due at their end; longer ones to the tick


def _wait(d: Deployment, seconds: float, status: str) -> None:
    """Come back in ``seconds``: a task due then (a bake ends on time, not at the next tick), with
    the 1 s tick as the safety net should that message be lost or its worker die."""
    Deployment.objects.filter(pk=d.pk, state=d.state).update(
        next_run_at=timezone.now() + timedelta(seconds=seconds), status_text=status)
    if 0 < seconds <= HAND_OVER_S:
        enqueue("deployments.advance", d.pk, countdown=seconds)


def _deadline_due(d: Deployment) -> bool:
    return d.deadline_at is not None and State(d.state) in CAN_ROLL_BACK and timezone.now() >= d.deadline_at


def _deadline_step(d: Deployment) -> Next:
    return Next(Event.DEADLINE, reason=f"deadline {d.deadline_at:%Y-%m-%d %H:%M:%S} UTC passed")


def _handle(d: Deployment) -> Next:
    try:
        return HANDLERS[State(d.state)](d)
    except TritonError as exc:
        # A server that does not answer is retried by the next pass; the handlers decide when
        # repeated trouble is a failure (a load that failed twice, a warm-up that failed).
        return Next(wait_s=2.0, status=f"Triton did not answer: {exc}")


# -- the handlers, one per worker state ---------------------------------------------------------


def _begin(d: Deployment) -> Next:
    return Next(Event.BEGIN, changes={"started_at": timezone.now()}, reason="a worker took it")


def _validate(d: Deployment) -> Next:
    problems = []
    if d.green_version.status != VersionStatus.READY:
        problems.append(f"v{d.green_version.version} is not a ready version")
    if d.placement_mode == PlacementMode.NEW_SERVERS:
        for server in Server.objects.filter(pk__in=[s["id"] for s in d.servers]):
            if server.draining_since:
                problems.append(f"{server.name} is draining")
            elif server.status == ServerStatus.DOWN:
                problems.append(f"{server.name} is down ({server.last_error or 'not reachable'})")
        if Server.objects.filter(pk__in=[s["id"] for s in d.servers]).count() != len(d.servers):
            problems.append("a server of the plan was deregistered")
    blue_ready = [t for t in _model_targets(d, TargetState.READY) if d.blue_version.version in t.placement.versions]
    if not blue_ready:
        problems.append(f"v{d.blue_version.version} is READY on no server")
    if problems:
        return Next(Event.ERROR, reason="validation failed: " + "; ".join(problems))
    return Next(Event.OK, reason="config, servers and quota checked")


def _model_targets(d: Deployment, *states) -> list[PlacementTarget]:
    return list(PlacementTarget.objects.select_related("placement", "server").filter(
        model_id=d.model_id, state__in=states, server__isnull=False))


def _green_placement(d: Deployment) -> Placement:
    """Create green's placement, or find the one an earlier pass created (placement_create is a
    no-op for the same request), and remember it."""
    servers = list(Server.objects.filter(pk__in=[s["id"] for s in d.servers]).order_by("name"))
    config = None
    if d.placement_mode == PlacementMode.SAME_SERVERS:
        config = Placement.objects.filter(pk__in=d.blue_placements).select_related("config").order_by("-id").first()
        config = config.config if config is not None else None
    placement, _ = placement_create(actor=WORKER, model=d.model, versions=d.plan["green_versions"], servers=servers,
                                    config=config)
    Deployment.objects.filter(pk=d.pk, green_placement__isnull=True).update(green_placement=placement)
    return placement


def _provision(d: Deployment) -> Next:
    placement = d.green_placement if d.green_placement_id else _green_placement(d)
    placement_apply(placement_id=placement.pk, actor=WORKER)  # loads in parallel; no-op when another worker loads
    targets = list(PlacementTarget.objects.filter(placement=placement).exclude(state=TargetState.REMOVED))
    failed = [t for t in targets if t.state in (TargetState.FAILED, TargetState.STUCK)]
    if failed:
        retried = d.plan.get("provision_retries", 0)
        if retried < PROVISION_RETRIES:
            from controlplane.placements.services import placement_retry

            placement_retry(actor=WORKER, placement=placement)
            Deployment.objects.filter(pk=d.pk).update(plan={**d.plan, "provision_retries": retried + 1})
            return Next(wait_s=0.2, status="retrying green's load")
        text = "; ".join(f"{t.server_name}: {t.error.splitlines()[0] if t.error else t.state}" for t in failed)
        return Next(Event.ERROR, reason=f"green did not load: {text}")
    now = timezone.now()
    orphaned = [t.server_name for t in targets if t.state == TargetState.LOADING
                and t.lease_expired(now, fallback_s=placement_conf.stuck_seconds())]
    if orphaned:  # its worker died: the reconciler, which reads Triton, adopts the load or sends it again
        reconcile_soon()
        return Next(wait_s=0.2, status=f"green's load on {', '.join(orphaned)} lost its worker; reconciling")
    waiting = [t.server_name for t in targets if t.state != TargetState.READY]
    if waiting:
        return Next(wait_s=0.2, status=f"loading green on {', '.join(waiting)}")
    seconds = max((t.load_seconds or 0 for t in targets), default=0)
    return Next(Event.OK, reason=f"green READY on {len(targets)} server(s)", detail={"load_seconds": seconds})


def _verify(d: Deployment) -> Next:
    targets = list(PlacementTarget.objects.select_related("server").filter(
        placement_id=d.green_placement_id, state=TargetState.READY, server__isnull=False))
    if not targets:
        return Next(Event.ERROR, reason="green is READY on no server any more")
    model = d.model

    def warm(target: PlacementTarget) -> str:
        client = TritonClient(target.server.http_url, timeout=placement_conf.call_timeout())
        try:
            client.warm_up(model.triton_name, d.green_version.version, model.inputs, max_batch_size=model.max_batch_size)
        except TritonError as exc:
            return f"{target.server_name}: {exc}"
        return ""

    errors = [e for e in fan_out(warm, targets, concurrency=placement_conf.concurrency(), name="warm-up") if e]
    if errors:
        return Next(Event.ERROR, reason="warm-up inference failed: " + "; ".join(errors))
    steps = d.steps
    return Next(Event.OK, reason=f"a warm-up inference passed on {len(targets)} server(s)",
                changes={"step_index": 0, "traffic_percent": steps[0]["percent"], "failed_evaluations": 0,
                         "plan": {**d.plan, "baseline": _baseline(d)}})


def _baseline(d: Deployment) -> dict:
    """Blue's p99 before any traffic moves: the reference of a relative gate when blue has no
    traffic left to compare with in the window (a step at 100%)."""
    gates = Gates.from_dict(d.gates)
    if gates.max_p99_ratio is None:
        return {}
    try:
        sample = queries.gate_sample(client_from_settings(), d.endpoint.public_name, _blue_variant_before(d),
                                     "latency_p99", gates.window_s)
    except MetricsError:
        return {}
    return {"p99_s": sample.value, "requests": sample.requests}


def _blue_variant_before(d: Deployment) -> str:
    """The variant name blue had in the table before the rollout (the label, or the pinned name)."""
    if d.endpoint.kind == "label":
        return d.endpoint.label
    variants = d.plan.get("blue_variants") or []
    return variants[0]["name"] if variants else BLUE


def _traffic_settled(d: Deployment, what: str) -> Next | None:
    """None when every live gateway replica serves a routing table that holds this deployment's
    current traffic; else a short wait. Publishing is idempotent: it stores a new version only
    when the table changed."""
    version = publish_if_changed()
    if version != d.table_version:
        Deployment.objects.filter(pk=d.pk, state=d.state).update(table_version=version)
    if all_replicas_serve(version):
        return None
    return Next(wait_s=REPLICA_POLL_S, status=f"waiting for every gateway replica to serve routing table v{version} ({what})")


def _shift(d: Deployment) -> Next:
    waiting = _traffic_settled(d, f"{d.traffic_percent}% to green")
    if waiting is not None:
        return waiting
    return Next(Event.OK, reason=f"every gateway serves {d.traffic_percent}% to green",
                changes={"step_started_at": timezone.now()}, detail={"table_version": d.table_version})


def _bake(d: Deployment) -> Next:
    step = d.steps[d.step_index]
    ends = d.step_started_at + timedelta(seconds=step["bake_s"])
    left = (ends - timezone.now()).total_seconds()
    if left > 0:  # the status is written once: it names the end, which does not go stale as a countdown does
        return Next(wait_s=left, status=f"baking step {d.step_index + 1} of {len(d.steps)} at {d.traffic_percent}% "
                                        f"until {ends:%H:%M:%S} UTC")
    return Next(Event.OK, reason=f"baked {step['bake_s']} s")


def read_gates(d: Deployment, gates: Gates, window_s: int) -> list[verdicts.Evaluation]:
    """Take the readings the gates need (a few instant queries) and judge them."""
    client = client_from_settings()
    endpoint = d.endpoint.public_name

    def sample(variant: str, metric: str) -> verdicts.Reading:
        s = queries.gate_sample(client, endpoint, variant, metric, window_s)
        return verdicts.Reading(s.value, s.requests)

    errors = sample(GREEN, "error_ratio")
    green_p99 = sample(GREEN, "latency_p99") if gates.max_p99_ms is not None or gates.max_p99_ratio is not None else None
    blue_p99 = None
    if gates.max_p99_ratio is not None:
        blue_p99 = sample(BLUE, "latency_p99")
        baseline = d.plan.get("baseline") or {}
        if blue_p99.requests < gates.min_requests and baseline.get("p99_s"):
            blue_p99 = verdicts.Reading(baseline["p99_s"], baseline.get("requests", 0))
    custom = {}
    model = d.model.triton_name
    for gate in gates.custom:
        text = custom_gates.fill(gate.query, endpoint=endpoint, model=model, variant=GREEN, window_s=window_s)
        # Checked again before it runs: a gate stored before the check existed reads as no data.
        pinned = custom_gates.is_pinned(text, endpoint=endpoint, model=model)
        found = [v.value for v in client.query(text) if v.value is not None] if pinned else []
        custom[gate.name] = verdicts.Reading(found[0] if found else None, errors.requests)
    return verdicts.judge_gates(gates, window_s=window_s, green_errors=errors, green_p99=green_p99,
                                blue_p99=blue_p99, custom=custom)


def _analyze(d: Deployment) -> Next:
    gates = Gates.from_dict(d.gates)
    age = (timezone.now() - d.step_started_at).total_seconds() if d.step_started_at else gates.window_s
    window = max(5, min(gates.window_s, int(age)))
    try:
        evaluations = read_gates(d, gates, window)
    except MetricsError as exc:
        evaluations = [verdicts.Evaluation("metrics", None, 0, 0, window, "no_data", f"Prometheus: {exc.message}")]
    now = timezone.now()
    GateEvaluation.objects.bulk_create([
        GateEvaluation(deployment=d, step_index=d.step_index, gate=e.gate, value=e.value, limit=e.limit,
                       requests=e.requests, window_s=e.window_s, verdict=e.verdict, detail=e.detail[:2000], at=now)
        for e in evaluations
    ])
    verdict = verdicts.overall(evaluations)
    failed_in_row = d.failed_evaluations + 1 if verdict == "fail" else 0
    last = d.step_index >= len(d.steps) - 1
    event = verdicts.next_event(verdict, failed_in_row=failed_in_row, failures_to_breach=gates.failures_to_breach,
                                last_step=last, approval_required=d.approval_required)
    summary = "; ".join(f"{e.gate} {e.verdict}" + (f" ({e.detail})" if e.detail else "") for e in evaluations)
    if event == Event.NO_DATA and age < gates.window_s:
        # Metrics lag the traffic by a scrape and a rule evaluation: judge "too few requests" only
        # once the step has run a whole window. Until then, look again (no data still never passes).
        return Next(wait_s=gates.interval_s, status=f"waiting for data ({age:.0f} of {gates.window_s} s): {summary}")
    if event is None:
        Deployment.objects.filter(pk=d.pk, state=d.state).update(failed_evaluations=failed_in_row)
        return Next(wait_s=gates.interval_s, status=f"failed {failed_in_row} of {gates.failures_to_breach} evaluations "
                                                    f"in a row: {summary}")
    detail = {"verdict": verdict, "evaluations": [e.gate + ":" + e.verdict for e in evaluations]}
    if event == Event.PASS:
        nxt = d.step_index + 1
        return Next(event, reason=f"step {d.step_index + 1} passed: {summary}", detail=detail,
                    changes={"step_index": nxt, "traffic_percent": d.steps[nxt]["percent"], "failed_evaluations": 0})
    if event == Event.LAST_PASS:
        return Next(event, reason=f"last step passed: {summary}", detail=detail,
                    changes={"traffic_percent": 100, "failed_evaluations": 0},
                    side_effects=promotion_write)
    if event == Event.NO_DATA:
        return Next(event, reason=verdicts.no_data_reason(evaluations), detail=detail,
                    changes={"status_text": verdicts.no_data_reason(evaluations), "failed_evaluations": 0})
    if event == Event.BREACH:
        return Next(event, reason=f"gate breached {failed_in_row} times in a row: {summary}", detail=detail,
                    changes={"failed_evaluations": failed_in_row})
    return Next(event, reason=f"every step passed; waiting for approval: {summary}", detail=detail,
                changes={"failed_evaluations": 0})


def _promote(d: Deployment) -> Next:
    waiting = _traffic_settled(d, "100% to green")
    if waiting is not None:
        return waiting
    window = d.rollback_window_s
    return Next(Event.OK, reason=f"every gateway serves green; blue stays loaded for {window} s",
                changes={"next_run_at": timezone.now() + timedelta(seconds=window)})


def _retire(d: Deployment) -> Next:
    left = (d.succeeded_at + timedelta(seconds=d.rollback_window_s) - timezone.now()).total_seconds()
    if left > 0:
        return Next(wait_s=left, status=f"blue stays loaded for {left:.0f} s more (the rollback window)")
    _unload_blue(d)
    commands.release_surge(WORKER, d, "blue retired")
    return Next(Event.RETIRE, reason="rollback window over: blue unloaded")


def _unload_blue(d: Deployment) -> None:
    if d.placement_mode == PlacementMode.SAME_SERVERS:
        keep = sorted(set(d.plan["green_versions"]) - {d.blue_version.version})
        _replace_on_green_servers(d, keep)
        return
    for placement in Placement.objects.filter(pk__in=d.blue_placements, removed_at__isnull=True):
        placement_remove(actor=WORKER, placement=placement)


def _replace_on_green_servers(d: Deployment, versions: list[int]) -> None:
    """Same servers: load exactly ``versions`` where green was loaded beside blue (a no-op when that
    placement exists already: placement_create returns it)."""
    if d.green_placement_id is None:
        return
    servers = list(Server.objects.filter(
        placement_targets__placement_id=d.green_placement_id).exclude(placement_targets__state=TargetState.REMOVED)
        .distinct())
    servers = servers or list(Server.objects.filter(pk__in=[s["id"] for s in d.servers]))
    if servers and versions:
        placement_create(actor=WORKER, model=d.model, versions=versions, servers=servers,
                         config=d.green_placement.config)


def _roll_back(d: Deployment) -> Next:
    waiting = _traffic_settled(d, "100% back to blue")
    if waiting is not None:
        return waiting
    if d.green_placement_id is not None:
        if d.placement_mode == PlacementMode.SAME_SERVERS:
            _replace_on_green_servers(d, d.plan.get("blue_versions") or [d.blue_version.version])
        else:
            placement_remove(actor=WORKER, placement=d.green_placement)
    commands.release_surge(WORKER, d, "deployment rolled back")
    return Next(Event.OK, reason=f"traffic back on blue (routing table v{d.table_version}); green unloaded")


HANDLERS = {
    State.PENDING: _begin,
    State.VALIDATING: _validate,
    State.PROVISIONING: _provision,
    State.VERIFYING: _verify,
    State.SHIFTING: _shift,
    State.BAKING: _bake,
    State.ANALYZING: _analyze,
    State.PROMOTING: _promote,
    State.SUCCEEDED: _retire,
    State.ROLLING_BACK: _roll_back,
}


# -- the periodic tick: schedules, deadlines and the reconciler ---------------------------------


def deployments_tick() -> list[int]:
    """Start due schedules, and hand every deployment whose worker should look at it now (its wait
    is over, or its worker died) to a worker. Returns the ids handed out."""
    now = timezone.now()
    for d in Deployment.objects.select_related("team", "endpoint__team", "blue_version", "green_version").filter(
            state=State.SCHEDULED, start_at__lte=now):
        try:
            apply_event(d, Event.DUE, actor=Actor.system(Source.SCHEDULE), reason="start time came")
        except Refused:
            pass
    due = list(Deployment.objects.filter(state__in=[s.value for s in WORKER_STATES], next_run_at__lte=now)
               .values_list("pk", flat=True))
    due += list(Deployment.objects.filter(state__in=[s.value for s in CAN_ROLL_BACK], deadline_at__lte=now)
                .exclude(pk__in=due).values_list("pk", flat=True))
    with transaction.atomic():
        for pk in due:
            enqueue("deployments.advance", pk)
    return due
