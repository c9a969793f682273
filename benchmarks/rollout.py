"""Rollout speed: the control loop's overhead on the real fleet and at fleet scale, breach to
blue and promote to green at the gateway.

Targets (ARCHITECTURE.md, "Performance targets"; BENCHMARKS.md, "Rollout overhead", "Fleet scale",
"Breach to blue", "Switch time"): a rollout's control overhead (wall time minus bake times minus
Triton's load time) is at most 2 s on the real test fleet, does not grow linearly with the fleet
and is at most 10 s at 1,000 simulated servers; from a green's first failed response to 100% of
gateway traffic on blue takes 3 s or less; from a Promote call's return to 100% of gateway
traffic on green takes 1 s or less. All four are measured in one run, several rounds each, and
reported as medians with their spread.

1. **The real fleet** (one stack for this part and parts 3 and 4; it runs first): moto's S3,
   two real tritonservers on it (devstack), gunicorn serving Switchyard on this database (metrics_pipeline's ``start_web``), a real
   Prometheus discovering the gateway and Triton through Switchyard (the shipped rules at a 10 s
   window, every interval 1 s, as the metrics tests render them), a real gateway
   (``GatewayProcess`` of the gateway tests, 2 workers, the table pushed through Redis, polled
   every 1 s) and a real Celery worker process with its embedded beat (``--concurrency 2``, as
   the demo runs it). Steady load through the gateway all along: 2 keep-alive clients
   (``LoadLoop`` of the gateway tests), paced to ``rate`` requests a second in all, every answer
   recorded (received time, status, the model's ``VERSION`` output). The model is the devstack
   test model, label-bound endpoint ``bench.rollout-scorer`` following ``stable`` (v1 on
   triton-0 at the start). The real-fleet parts run in the order overhead, promote, breach.
   **Overhead**: ``linear`` rollouts (``step_percent`` 40: steps at 40% and 80%, each baking
   ``bake_s``) to the other server (``new_servers``), gates every 1 s with
   ``failures_to_breach`` 1 and ``min_requests`` 5, ``rollback_window_s`` 0, green v2 and v3 in
   turn. Wall = the ``retired`` transition's time minus the moment before ``deployment_create``
   (the service, in process; the worker takes it from the broker). Overhead = wall - the bakes -
   green's ``PlacementTarget.load_seconds`` as the control plane recorded it (its load call to
   Triton). The plan counts one gate interval per step after each bake (``projected_s``); the
   engine evaluates at once when a bake ends, so nothing waits for that interval when the gates
   pass at once: the figure is given with it subtracted too (``rollout_overhead_net_s``). A
   rollout that pauses for lack of data is resumed at once by the benchmark and counted.
2. **Fleet scale** (runs last, in process, once the real fleet's processes have stopped and its
   gateway replicas have fallen silent): the simulated Triton fleet of
   ``benchmarks/triton_simulator.py`` (one asyncio process, a port per server, each load taking
   the simulator's ``load_seconds``), registered with the fleet app through its services. Per
   size N (10, 100, 1,000): a model whose blue (v1) is READY on one half of the N servers, a
   label-bound endpoint, then ``new_servers`` deployments putting green on the other half
   (v2, then v3, back and forth, the halves swapping). The benchmark process is the worker: it
   calls ``deployment_advance(id)`` (the engine's one entry point) until the rollout is retired,
   sleeping until ``next_run_at`` whenever it returns to wait (a bake), so no beat tick adds
   latency here. Every routing-table build is timed (one runs after each commit that asks to
   publish) and the audit events counted, which is where the growth with N shows. The
   tasks the services queue (the engine's own ``deployments.advance``, the placement tasks) are
   counted, not sent: the loop does that work; after each round the benchmark runs the blue
   unload the retire queued, in process, timed on its own. Gates: the simulator feeds no gateway
   metrics, and no data never passes, so ``SWITCHYARD_PROMETHEUS_URL`` points at a *stand-in*
   for Prometheus's query API (``PassingPrometheus`` below) that answers every gate query with
   an error ratio of 0 over 1,000 requests: this part measures the control loop's fan-out, not
   Prometheus. No gateway replica runs, so ``all_replicas_serve`` is true at once and a traffic
   step waits for nobody. Fan-out is bounded by ``SWITCHYARD_PLACEMENT_CONCURRENCY`` (loads and
   warm-ups); its value is printed. Overhead = wall (create to retired) - bakes - the
   simulator's load time; the growth ratio is the overhead at the largest N over the smallest.
3. **Breach to blue**: a ``canary`` at 50% of a green (v4) that answers its warm-up and then
   fails every second request (``failure_mode`` error_response), with the gates and the data-plane
   guard as deployed (``guard`` true) and a 30 s bake, so whatever stops green is the guard or a
   gate, not the end of a step. Timed from the first failed response the load received to the
   last response after it that did not come from blue (``switch_time`` of gateway_throughput:
   settled after 0.5 s of only blue). The mechanism is read from the deployment's transition to
   rolling_back (the guard's confirmation says "the gateway guard stopped sending to green", a
   gate's "gate breached"). Then the same with ``guard`` false and a ``bake_s`` bake: the
   Prometheus gate alone, for reference.
4. **Promote to green**: a ``canary`` at 10% with a 600 s bake; once it bakes and green answers,
   the benchmark calls ``POST /api/v1/deployments/<id>/promote/`` with a deployer's token, as a
   client would; timed from the call's return to the last response after it not from green
   (0 when none came after the return). The call's own duration is shown too.

``main()`` creates and drops its own database (``api_latency.run_in_own_database``); ``run()``
uses the current one, whose rows must be committed (the worker, gunicorn and Prometheus's
discovery read them from other processes). The real-fleet parts need REDIS_URL (the broker, the
cache lock and the table push), tritonserver (nvidia-pytriton) and Debian's prometheus.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

from benchmarks.api_latency import run_in_own_database
from benchmarks.gateway_throughput import SWITCH_SETTLE_S, switch_time
from benchmarks.metrics_pipeline import Processes, database_url, start_web

GOAL_OVERHEAD_S = 2.0
GOAL_FLEET_S = 10.0
GOAL_BREACH_S = 3.0
GOAL_PROMOTE_S = 1.0
REPO = Path(__file__).resolve().parent.parent
TEAM = "bench"
MODEL = "rollout-scorer"
ENDPOINT = f"{TEAM}.{MODEL}"
LABEL = "stable"
BUCKET = "switchyard-bench"
PREFIX = "repo"
GATEWAY_KEY = "rollout-benchmark-gateway-key"
HEALTHY = (2, 3)  # the greens of the overhead and promote rounds, in turn; v1 is the first blue
FAILING = 4  # fails every second request after the first (the warm-up passes)
VERSIONS = {1: {}, 2: {}, 3: {}, FAILING: {"failure_rate": 0.5, "failure_mode": "error_response"}}
PARTS = ("fleet", "overhead", "breach", "promote")
STATE_TIMEOUT_S = 120.0
QUIET = ("controlplane.endpoints.publication", "controlplane.deployments", "controlplane.placements")
ENDED = ("retired", "rolled_back", "aborted", "failed", "rollback_failed", "cancelled")


@dataclass(frozen=True)
class Size:
    overhead_rounds: int
    breach_rounds: int  # with the guard, as deployed
    gate_rounds: int  # with the guard off: the Prometheus gate alone
    promote_rounds: int
    fleet: tuple[int, ...]  # simulated fleet sizes; the first is the reference
    fleet_rounds: int  # rollouts per fleet size
    bake_s: int  # per step, real fleet
    fleet_bake_s: int  # per step, simulated fleet
    rate: float  # requests a second through the gateway, in all


SIZES = {
    "full": Size(overhead_rounds=5, breach_rounds=5, gate_rounds=2, promote_rounds=5, fleet=(10, 100, 1000),
                 fleet_rounds=3, bake_s=2, fleet_bake_s=2, rate=100),
    "small": Size(overhead_rounds=3, breach_rounds=3, gate_rounds=1, promote_rounds=3, fleet=(10, 100),
                  fleet_rounds=2, bake_s=2, fleet_bake_s=1, rate=100),
    "tiny": Size(overhead_rounds=1, breach_rounds=1, gate_rounds=0, promote_rounds=1, fleet=(2, 4),
                 fleet_rounds=1, bake_s=2, fleet_bake_s=1, rate=60),
}
STEP_PERCENT = 40  # linear: steps at 40% and 80%, then the promotion


def gates(*, min_requests: int = 5, guard: bool = True) -> dict:
    return {"max_error_ratio": 0.05, "min_requests": min_requests, "interval_s": 1, "window_s": 10,
            "failures_to_breach": 1, "guard": guard}


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Rollout:
    """One rollout, create to retired, with the time spent in each state (from its transitions)."""

    where: str  # "real" or "N=<servers>"
    fleet_size: int  # servers registered for the rollout's model: 2 on the real fleet, N simulated
    servers: int  # green's servers
    green: int
    wall_s: float  # create call to the retired transition
    to_succeeded_s: float
    bakes_s: float
    load_s: float  # Triton's load time subtracted: recorded by the control plane (real) or configured (simulator)
    intervals_s: float  # one gate interval per step, as the plan counts them
    phases: dict[str, float] = field(default_factory=dict)
    pauses: int = 0
    unload_s: float | None = None  # simulated fleet: blue's unload fan-out after the round
    loads_recorded_max_s: float = 0.0
    table_builds: int | None = None  # simulated fleet: routing-table builds during the rollout
    table_build_s: float | None = None  # and the time they took
    audit_events: int | None = None  # audit events the rollout wrote

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.bakes_s - self.load_s

    @property
    def overhead_net_s(self) -> float:
        return self.overhead_s - self.intervals_s


@dataclass
class Switch:
    """A breach (to blue) or a promotion (to green), timed at the gateway."""

    kind: str  # "breach", "breach, gate only", "promote"
    seconds: float | None  # None: never settled
    mechanism: str = ""
    failed: int = 0  # failed responses in the round
    blue_failed: int = 0  # failed responses that blue (or the label) answered: must be 0
    call_s: float | None = None  # promote: the API call's own duration
    state: str = ""
    detail: str = ""


@dataclass
class Result:
    size: str
    fleet: list[Rollout] = field(default_factory=list)
    overhead: list[Rollout] = field(default_factory=list)
    breaches: list[Switch] = field(default_factory=list)
    promotes: list[Switch] = field(default_factory=list)
    fleet_info: dict = field(default_factory=dict)
    failed_elsewhere: int = 0  # failed responses outside the breach rounds
    answers: int = 0
    final: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    load_average: list[tuple[float, ...]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Rollout bookkeeping, shared by both fleets


PHASES = ("create", "pending", "validating", "provisioning", "verifying", "shifting", "baking", "analyzing",
          "paused", "promoting", "succeeded")


def measure_rollout(d, started: float, *, where: str, fleet_size: int, load_s: float) -> Rollout:
    """Wall time and the time in each state, from the deployment's transitions (each stamped by the
    process that made it; one machine, one clock). `started`: time.time() before the create call.
    provisioning and baking are shown beyond the load and the bakes."""
    rows = list(d.transitions.order_by("id").values_list("to_state", "at"))
    times = [started] + [at.timestamp() for _, at in rows]
    states = ["create"] + [state for state, _ in rows]
    phases = dict.fromkeys(PHASES, 0.0)
    for state, begin, end in zip(states, times, times[1:]):
        phases[state] = phases.get(state, 0.0) + end - begin
    reached = dict(zip(states, times))
    bakes = float(sum(step["bake_s"] for step in d.steps))
    phases["provisioning"] -= load_s
    phases["baking"] -= bakes
    interval = d.gates.get("interval_s", 0)
    return Rollout(where=where, fleet_size=fleet_size, servers=len(d.servers), green=d.green_version.version,
                   wall_s=times[-1] - started, to_succeeded_s=reached.get("succeeded", times[-1]) - started,
                   bakes_s=bakes, load_s=load_s, intervals_s=float(interval * len(d.steps)), phases=phases,
                   pauses=states.count("paused"))


def green_load_seconds(d) -> float:
    from controlplane.placements.models import PlacementTarget

    found = PlacementTarget.objects.filter(placement_id=d.green_placement_id).values_list("load_seconds", flat=True)
    return max((s or 0.0 for s in found), default=0.0)


def rollout_request(green: int, servers: list[str], *, bake_s: int, strategy: str = "linear", percent: int = STEP_PERCENT,
                    guard: bool = True, min_requests: int = 5, reason: str) -> dict:
    shape = {"step_percent": percent} if strategy == "linear" else {"canary_percent": percent}
    return {"endpoint": ENDPOINT, "version": green, "strategy": strategy, **shape, "bake_s": bake_s,
            "placement": "new_servers", "servers": servers, "gates": gates(min_requests=min_requests, guard=guard),
            "rollback_window_s": 0, "reason": reason}


def other(version: int) -> int:
    return HEALTHY[1] if version == HEALTHY[0] else HEALTHY[0]


# --------------------------------------------------------------------------------------------
# 1. Fleet scale: the simulator, driven in process


class PassingPrometheus:
    """A stand-in for Prometheus's instant-query API, and named so: every query gets the shape of a
    gate query's answer (``q="value"`` 0, ``q="requests"`` 1000), so every error-ratio gate passes.
    The fleet-scale part measures the control loop's fan-out; Prometheus is not part of it."""

    def __init__(self):
        self.queries = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.queries += 1
                now = time.time()
                result = [{"metric": {"q": "value"}, "value": [now, "0"]},
                          {"metric": {"q": "requests"}, "value": [now, "1000"]}]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, name="passing-prometheus", daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class FleetModel:
    """One simulated fleet size: its model and endpoint, and which half blue is on."""

    servers: int
    model: object
    halves: tuple[list, list]
    blue: int = 1
    blue_half: int = 0


def seed_people():
    """A team, a deployer in it and a platform admin; returns (deployer actor, admin actor)."""
    from django.contrib.auth import get_user_model

    from controlplane.accounts.models import Membership, Role, Team
    from controlplane.audit.context import Actor

    users = get_user_model().objects
    team = Team.objects.get_or_create(slug=TEAM, defaults={"display_name": "Benchmark"})[0]
    deployer = users.get_or_create(username="bench-deployer")[0]
    Membership.objects.get_or_create(user=deployer, team=team, defaults={"role": Role.DEPLOYER})
    admin = users.get_or_create(username="bench-admin", defaults={"is_staff": True})[0]
    return team, Actor(user=deployer, source="api"), Actor(user=admin, source="api")


def make_model(team, actor, name: str):
    from controlplane.devstack.testmodels import TEST_MODEL_INPUTS, TEST_MODEL_OUTPUTS
    from controlplane.registry.services import model_create

    return model_create(actor=actor, team=team, name=name, backend="python", max_batch_size=8,
                        inputs=TEST_MODEL_INPUTS, outputs=TEST_MODEL_OUTPUTS)


def place_blue_and_endpoint(team, actor, model, servers: list, *, version: int = 1, name: str | None = None):
    """Blue READY on `servers` (loaded in process), the label on it, an open label-bound endpoint."""
    from controlplane.endpoints.services import endpoint_create
    from controlplane.placements.services import placement_apply, placement_create
    from controlplane.registry.labels import label_set

    placement, _ = placement_create(actor=actor, model=model, versions=[version], servers=servers)
    done = placement_apply(placement_id=placement.pk, actor=actor)
    if done.get("ready") != len(servers):
        raise RuntimeError(f"blue did not load on every server: {done}")
    label_set(actor=actor, model=model, name=LABEL, version=version, reason="rollout benchmark")
    return endpoint_create(actor=actor, team=team, name=name or model.name, model=model, kind="label", label=LABEL,
                           access="open")


def drive_in_process(deployment_id: int, timeout: float = 600.0) -> str:
    """What a worker does, in this process: advance until the rollout ends, sleeping until its
    next_run_at whenever the engine returns to wait."""
    from django.utils import timezone

    from controlplane.deployments.models import Deployment
    from controlplane.deployments.services import deployment_advance

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = deployment_advance(deployment_id)
        if state is None:
            raise RuntimeError(f"deployment {deployment_id}: another driver holds it")
        if state in ENDED or state in ("paused", "awaiting_approval"):
            return state
        due = Deployment.objects.values_list("next_run_at", flat=True).get(pk=deployment_id)
        if due is not None:
            time.sleep(max(0.0, (due - timezone.now()).total_seconds()))
    raise RuntimeError(f"deployment {deployment_id} did not end within {timeout:.0f} s")


def fleet_scale(spec: Size, out, result: Result) -> None:
    from django.test import override_settings

    from benchmarks.triton_simulator import (
        DEFAULT_LOAD_SECONDS,
        register_simulated_fleet,
        start_simulator,
    )
    from controlplane.endpoints.replicas import all_replicas_serve
    from controlplane.placements import conf as placement_conf

    queued: Counter = Counter()
    with contextlib.ExitStack() as stack:
        # The engine's and the services' tasks are counted, not sent: this process is the worker.
        stack.enter_context(mock.patch("controlplane.common.tasks._send",
                                       lambda name, args, kwargs, countdown=None: queued.update([name])))
        builds = stack.enter_context(count_table_builds())
        prometheus = PassingPrometheus()
        stack.callback(prometheus.close)
        # No gateway replica counts: the real fleet's stopped gateway falls silent first.
        _wait(lambda: all_replicas_serve(sys.maxsize), 30, "the stopped gateway's replicas to fall silent", 0.5)
        stack.enter_context(override_settings(SWITCHYARD_PROMETHEUS_URL=prometheus.url))
        t0 = time.perf_counter()
        simulator = start_simulator(max(spec.fleet), load_seconds=DEFAULT_LOAD_SECONDS)
        stack.callback(simulator.stop)
        team, actor, admin = seed_people()
        servers = register_simulated_fleet(simulator, actor=admin)
        result.seconds["simulator start and registration"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fleets = {}
        for n in spec.fleet:
            model = make_model(team, actor, f"fleet-{n:04d}")
            _seed_versions(model, (1, *HEALTHY), actor)
            halves = (servers[:n // 2], servers[n // 2:n])
            place_blue_and_endpoint(team, actor, model, halves[0])
            fleets[n] = FleetModel(servers=n, model=model, halves=halves)
        result.seconds["fleet blue placements"] = time.perf_counter() - t0
        result.fleet_info = {"simulated servers": len(servers), "load_seconds": DEFAULT_LOAD_SECONDS,
                             "placement concurrency": placement_conf.concurrency()}
        print(f"  fleet scale: {len(servers)} simulated servers registered; load {DEFAULT_LOAD_SECONDS:g} s; "
              f"SWITCHYARD_PLACEMENT_CONCURRENCY {placement_conf.concurrency()}", file=out, flush=True)
        t0 = time.perf_counter()
        for r in range(spec.fleet_rounds):
            for n in (spec.fleet if r % 2 == 0 else tuple(reversed(spec.fleet))):
                rollout = fleet_round(fleets[n], actor, spec, DEFAULT_LOAD_SECONDS, builds)
                result.fleet.append(rollout)
                print(f"  N={n}: green v{rollout.green} on {rollout.servers} servers, wall {rollout.wall_s:.2f} s, "
                      f"overhead {rollout.overhead_s:.2f} s, blue unload {rollout.unload_s:.2f} s", file=out, flush=True)
        result.seconds["fleet rollouts"] = time.perf_counter() - t0
        result.fleet_info["gate queries answered by the stand-in"] = prometheus.queries
        result.fleet_info["tasks counted, not sent"] = dict(sorted(queued.items()))


@contextlib.contextmanager
def count_table_builds():
    """The duration of every routing-table build (``routing.build_table``, which each publish runs:
    one after every commit that asked for it) while the block runs."""
    from controlplane.endpoints import routing

    durations: list[float] = []
    build = routing.build_table

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - t0)

    with mock.patch.object(routing, "build_table", timed):
        yield durations


def _seed_versions(model, numbers, actor) -> None:
    """READY versions without artifacts: the simulator loads any version of any model."""
    from controlplane.registry.models import ModelVersion, VersionStatus

    ModelVersion.objects.bulk_create([
        ModelVersion(model=model, version=n, status=VersionStatus.READY, artifact_uri=f"s3://simulated/{model.name}/{n}/",
                     checksum="sha256:" + "0" * 64, created_by=actor.user)
        for n in numbers
    ])


def fleet_round(fleet: FleetModel, actor, spec: Size, load_s: float, builds: list[float]) -> Rollout:
    from controlplane.audit.models import AuditEvent
    from controlplane.deployments.models import Deployment
    from controlplane.deployments.services import deployment_create
    from controlplane.placements.models import Placement
    from controlplane.placements.services import placement_unload

    green, target = other(fleet.blue), 1 - fleet.blue_half
    data = rollout_request(green, [s.name for s in fleet.halves[target]], bake_s=spec.fleet_bake_s,
                           min_requests=1, reason="fleet-scale benchmark")
    data["endpoint"] = f"{TEAM}.{fleet.model.name}"
    audit_before, builds_before = AuditEvent.objects.count(), len(builds)
    started = time.time()
    d = deployment_create(actor=actor, data=data)
    state = drive_in_process(d.pk)
    built = builds[builds_before:]
    if state != "retired":
        d.refresh_from_db()
        raise RuntimeError(f"N={fleet.servers}: the rollout ended {state}: {d.status_text}")
    d = Deployment.objects.select_related("green_version").get(pk=d.pk)
    rollout = measure_rollout(d, started, where=f"N={fleet.servers}", fleet_size=fleet.servers, load_s=load_s)
    rollout.loads_recorded_max_s = green_load_seconds(d)
    rollout.table_builds, rollout.table_build_s = len(built), sum(built)
    rollout.audit_events = AuditEvent.objects.count() - audit_before
    t0 = time.perf_counter()  # blue's unload, which the retire queued: the same fan-out
    for pk in Placement.objects.filter(pk__in=d.blue_placements).values_list("pk", flat=True):
        placement_unload(placement_id=pk, actor=actor)
    rollout.unload_s = time.perf_counter() - t0
    fleet.blue, fleet.blue_half = green, target
    return rollout


# --------------------------------------------------------------------------------------------
# 2-4. The real fleet


@dataclass
class Answer:
    at: float  # received, time.monotonic()
    status: int
    variant: str  # the gateway's X-Switchyard-Variant
    version: int  # the model's VERSION output; 0 when it failed


def read_answers(load, start: int = 0) -> list[Answer]:
    out = []
    for at, status, headers, body in list(load.results)[start:]:
        version = 0
        if status == 200:
            with contextlib.suppress(ValueError, KeyError, TypeError, StopIteration):
                version = int(next(o for o in json.loads(body)["outputs"] if o["name"] == "VERSION")["data"][0])
        out.append(Answer(at, status, headers.get("x-switchyard-variant", ""), version))
    return out


def time_to_all(answers: list[Answer], since: float, version: int, now: float) -> float | None:
    """Seconds from `since` to the last answer received after it that was not a success from
    `version` (0 when none), once only `version` answered for SWITCH_SETTLE_S; else None."""
    records = [(a.at, a.at, a.status, "new" if a.status == 200 and a.version == version else "other", a.version)
               for a in answers]
    return switch_time(records, since, "new", now)


def paced(rate: float):
    """A LoadLoop call that infers through the gateway at `rate` requests a second per thread."""
    local = threading.local()

    def call(client):
        due = getattr(local, "due", 0.0)
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        local.due = max(due, now) + 1.0 / rate
        return client.infer(ENDPOINT)

    return call


@dataclass
class RealFleet:
    actor: object  # the deployer
    token: str  # the deployer's deploy token, for the REST API
    web_url: str
    model: object
    servers: list  # Server rows, triton-0 and triton-1
    load: object  # LoadLoop
    blue: int = 1
    blue_server: int = 0
    failed_elsewhere: int = 0  # failed answers in the overhead and promote rounds


def _wait(predicate, timeout: float, what: str, interval: float = 0.02):
    """The predicate's first true value, polled; RuntimeError naming `what` after `timeout`."""
    from tests.gateway.gateway_support import wait_until

    value = wait_until(predicate, timeout, interval)
    if not value:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
    return value


def follow(fleet: RealFleet, d, until: tuple[str, ...], timeout: float = STATE_TIMEOUT_S) -> str:
    """Wait for one of the states `until`; a pause for lack of data is resumed at once (and shows
    in the transitions)."""
    from controlplane.deployments.models import Deployment
    from controlplane.deployments.services import deployment_act

    def state():
        current = Deployment.objects.values_list("state", flat=True).get(pk=d.pk)
        if current == "paused" and "paused" not in until:
            deployment_act(actor=fleet.actor, deployment=d, action="resume", reason="benchmark: resumed at once")
        return current if current in until or current in ENDED else None

    return _wait(state, timeout, f"deployment {d.pk} to reach {', '.join(until)}")


def wait_server_free(fleet: RealFleet, index: int) -> None:
    from controlplane.placements.models import PlacementTarget, TargetState

    _wait(lambda: not PlacementTarget.objects.filter(model=fleet.model, server=fleet.servers[index])
          .exclude(state=TargetState.REMOVED).exists(), 60, f"triton-{index} to be free of {MODEL}", interval=0.1)


def count_failures(fleet: RealFleet, start: int) -> int:
    return sum(1 for a in read_answers(fleet.load, start) if a.status != 200)


def overhead_round(fleet: RealFleet, spec: Size) -> Rollout:
    from controlplane.audit.models import AuditEvent
    from controlplane.deployments.services import deployment_create

    green, target = other(fleet.blue), 1 - fleet.blue_server
    start = len(fleet.load.results)
    audit_before = AuditEvent.objects.count()
    started = time.time()
    d = deployment_create(actor=fleet.actor, data=rollout_request(
        green, [fleet.servers[target].name], bake_s=spec.bake_s, reason="rollout overhead benchmark"))
    state = follow(fleet, d, ("retired",))
    if state != "retired":
        d.refresh_from_db()
        raise RuntimeError(f"the rollout to v{green} ended {state}: {d.status_text}")
    d.refresh_from_db()
    rollout = measure_rollout(d, started, where="real", fleet_size=len(fleet.servers), load_s=green_load_seconds(d))
    rollout.audit_events = AuditEvent.objects.count() - audit_before
    wait_server_free(fleet, fleet.blue_server)
    fleet.failed_elsewhere += count_failures(fleet, start)
    fleet.blue, fleet.blue_server = green, target
    return rollout


def breach_round(fleet: RealFleet, spec: Size, *, guard: bool) -> Switch:
    from controlplane.deployments.services import deployment_create

    target = 1 - fleet.blue_server
    start = len(fleet.load.results)
    d = deployment_create(actor=fleet.actor, data=rollout_request(
        FAILING, [fleet.servers[target].name], bake_s=30 if guard else spec.bake_s, strategy="canary", percent=50,
        guard=guard, reason="breach benchmark"))
    state = follow(fleet, d, ("rolled_back",), timeout=90)
    time.sleep(SWITCH_SETTLE_S + 0.3)
    answers = read_answers(fleet.load, start)
    failed = [a for a in answers if a.status != 200]
    seconds = None
    if failed:
        seconds = time_to_all(answers, failed[0].at, fleet.blue, now=time.monotonic())
    turn = d.transitions.filter(to_state="rolling_back").order_by("id").first()
    reason = turn.reason if turn else ""
    mechanism = ("guard" if reason.startswith("the gateway guard") else "gate" if "gate breached" in reason
                 else (turn.event if turn else "none"))
    wait_server_free(fleet, target)
    return Switch(kind="breach" if guard else "breach, gate only", seconds=seconds, mechanism=mechanism,
                  failed=len(failed), blue_failed=sum(1 for a in failed if a.variant != "green"), state=state,
                  detail=reason[:160])


def promote_round(fleet: RealFleet, spec: Size) -> Switch:
    from controlplane.deployments.services import deployment_create

    green, target = other(fleet.blue), 1 - fleet.blue_server
    start = len(fleet.load.results)
    d = deployment_create(actor=fleet.actor, data=rollout_request(
        green, [fleet.servers[target].name], bake_s=600, strategy="canary", percent=10, reason="promote benchmark"))
    follow(fleet, d, ("baking",))
    baking = time.monotonic()
    _wait(lambda: any(a.version == green for a in read_answers(fleet.load, start) if a.at >= baking), 20,
          "green to answer at 10%")
    request = urllib.request.Request(f"{fleet.web_url}/api/v1/deployments/{d.pk}/promote/", method="POST",
                                     data=b'{"reason": "promote benchmark"}',
                                     headers={"Authorization": f"Bearer {fleet.token}", "Content-Type": "application/json"})
    called = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    returned = time.monotonic()

    seconds = None
    while seconds is None and time.monotonic() - returned < 10:
        time.sleep(0.05)
        seconds = time_to_all(read_answers(fleet.load, start), returned, green, now=time.monotonic())
    state = follow(fleet, d, ("retired",))
    wait_server_free(fleet, fleet.blue_server)
    failed = count_failures(fleet, start)
    fleet.failed_elsewhere += failed
    fleet.blue, fleet.blue_server = green, target
    return Switch(kind="promote", seconds=seconds, failed=failed, call_s=returned - called, state=state)


def start_real_fleet(stack: contextlib.ExitStack, spec: Size, workdir: Path, out) -> RealFleet:
    """Everything of the real fleet, each process stopped by `stack`."""
    import redis
    from django.conf import settings
    from django.test import override_settings
    from django.utils import timezone

    from controlplane.accounts.services import token_create
    from controlplane.devstack.prometheus import start_prometheus
    from controlplane.devstack.s3 import ensure_bucket, start_s3_server
    from controlplane.devstack.testmodels import python_model_files
    from controlplane.devstack.triton import start_triton_server
    from controlplane.endpoints.publication import REDIS_KEY, REDIS_VERSION_KEY
    from controlplane.fleet import services as fleet_services
    from controlplane.metrics import queries
    from controlplane.metrics.client import PrometheusClient
    from controlplane.metrics.config import render_files, write_files
    from controlplane.registry.services import version_register
    from tests.gateway.gateway_support import GatewayProcess, LoadLoop

    if not settings.REDIS_URL:
        raise RuntimeError("the real-fleet parts need REDIS_URL (the Celery broker, the cache lock, the table push)")
    procs = Processes(workdir)
    stack.callback(procs.stop_all)
    s3 = start_s3_server(log_dir=workdir)
    stack.callback(s3.stop)
    ensure_bucket(s3.client(), BUCKET)
    s3_settings = {"SWITCHYARD_S3_ENDPOINT_URL": s3.endpoint_url, "SWITCHYARD_S3_BUCKET": BUCKET,
                   "SWITCHYARD_S3_PREFIX": PREFIX}
    stack.enter_context(mock.patch.dict(os.environ, {**s3.env(), "SWITCHYARD_GATEWAY_KEY": GATEWAY_KEY}))
    stack.enter_context(override_settings(**s3_settings, SWITCHYARD_GATEWAY_KEY=GATEWAY_KEY))
    tritons = []
    for i in range(2):
        tritons.append(start_triton_server(name=f"triton-{i}", repository=f"s3://{s3.host_port}/{BUCKET}/{PREFIX}",
                                           s3=s3, work_dir=workdir / f"triton-{i}"))
        stack.callback(tritons[-1].stop)

    team, actor, admin = seed_people()
    expires = timezone.now() + timedelta(days=1)
    _, read_token = token_create(actor=admin, user=admin.user, name="prometheus", scopes=["read"], expires_at=expires)
    _, deploy_token = token_create(actor=actor, user=actor.user, name="promote", scopes=["deploy"], expires_at=expires)
    pool = fleet_services.pool_create(actor=admin, name="bench-triton", description="the rollout benchmark's tritonservers")
    servers = [fleet_services.server_register(actor=admin, name=f"triton-{i}", pool=pool, http_url=t.http_url,
                                              metrics_url=t.metrics_url) for i, t in enumerate(tritons)]
    fleet_services.fleet_probe(server_ids=[s.pk for s in servers], actor=admin)
    model = make_model(team, actor, MODEL)
    for number, knobs in VERSIONS.items():
        version_register(actor=actor, model=model, version=number, contents=python_model_files(version=number, **knobs))
    place_blue_and_endpoint(team, actor, model, servers[:1])

    redis.Redis.from_url(settings.REDIS_URL).delete(REDIS_KEY, REDIS_VERSION_KEY)  # versions of another database
    web_url = start_web(procs, read_token)
    config_dir = workdir / "prometheus"
    write_files(config_dir, render_files(switchyard_url=web_url, window="10s", gateway_scrape_s=1, triton_scrape_s=1,
                                         refresh_s=1), token=read_token)
    prometheus = start_prometheus(config_dir=config_dir, log_dir=workdir)
    stack.callback(prometheus.stop)
    gateway = GatewayProcess(["--control-plane", web_url, "--key", GATEWAY_KEY, "--redis", settings.REDIS_URL,
                              "--poll-interval", "1", "--replica-id", "bench-rollout"], workdir / "gateway.log", workers=2)
    stack.callback(gateway.stop)
    env = {**os.environ, **s3_settings, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL,
           "SWITCHYARD_PROMETHEUS_URL": prometheus.url, "SWITCHYARD_VAR_DIR": str(workdir), "PYTHONUNBUFFERED": "1",
           "DJANGO_SETTINGS_MODULE": "controlplane.settings"}
    procs.spawn([sys.executable, "-m", "celery", "-A", "controlplane", "worker", "-B", "--concurrency", "2",
                 "--loglevel", "INFO", "--without-gossip", "--without-mingle", "-n", "bench-rollout@%h",
                 "--schedule", str(workdir / "celerybeat-schedule")], "worker", env=env, cwd=REPO)
    load = LoadLoop(gateway.url, paced(spec.rate / 2), threads=2)
    stack.callback(load.stop)
    fleet = RealFleet(actor=actor, token=deploy_token, web_url=web_url, model=model, servers=servers, load=load)
    _wait(lambda: any(a.version == 1 for a in read_answers(load)), 30, "the gateway to serve v1")
    client = PrometheusClient(prometheus.url, timeout=5)
    _wait(lambda: queries.gate_sample(client, ENDPOINT, LABEL, "error_ratio", 10).requests > 0, 60,
          "Prometheus to hold the gateway's recorded series", interval=0.5)
    print(f"  real fleet up: 2 tritonservers, gateway {gateway.url} (2 workers), Prometheus {prometheus.url}, "
          f"a worker; load {spec.rate:g} req/s", file=out, flush=True)
    return fleet


def real_fleet(spec: Size, rounds: int | None, parts: tuple[str, ...], out, result: Result) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-rollout-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            t0 = time.perf_counter()
            fleet = start_real_fleet(stack, spec, workdir, out)
            result.seconds["real fleet start"] = time.perf_counter() - t0
            if "overhead" in parts:
                t0 = time.perf_counter()
                for _ in range(rounds or spec.overhead_rounds):
                    rollout = overhead_round(fleet, spec)
                    result.overhead.append(rollout)
                    print(f"  overhead: v{rollout.green}, wall {rollout.wall_s:.2f} s, load {rollout.load_s:.2f} s, "
                          f"overhead {rollout.overhead_s:.2f} s", file=out, flush=True)
                result.seconds["overhead rounds"] = time.perf_counter() - t0
            if "promote" in parts:
                t0 = time.perf_counter()
                for _ in range(rounds or spec.promote_rounds):
                    result.promotes.append(promote_round(fleet, spec))
                    print(f"  promote: {_fmt(result.promotes[-1].seconds)} s after the call returned", file=out, flush=True)
                result.seconds["promote rounds"] = time.perf_counter() - t0
            if "breach" in parts:
                t0 = time.perf_counter()
                for guard, count in ((True, rounds or spec.breach_rounds), (False, spec.gate_rounds)):
                    for _ in range(count):
                        result.breaches.append(breach_round(fleet, spec, guard=guard))
                        b = result.breaches[-1]
                        print(f"  {b.kind}: {_fmt(b.seconds)} s ({b.mechanism}, {b.failed} failed)", file=out, flush=True)
                result.seconds["breach rounds"] = time.perf_counter() - t0
            result.failed_elsewhere = fleet.failed_elsewhere + len(fleet.load.errors)  # errors: no answer at all
            result.answers = len(fleet.load.results) + len(fleet.load.errors)
    except BaseException:
        for name in ("worker", "gunicorn"):
            print(f"--- {name} log (tail) ---\n{Processes(workdir).log(name)}", file=sys.stderr)
        gateway_log = workdir / "gateway.log"
        if gateway_log.exists():
            print(f"--- gateway log (tail) ---\n{gateway_log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The run


def run(size: str = "full", rounds: int | None = None, out=None, parts: tuple[str, ...] = PARTS) -> Result:
    out = out or sys.stdout
    spec = SIZES[size]
    result = Result(size=size)
    result.load_average.append(os.getloadavg())
    with contextlib.ExitStack() as stack:
        for name in QUIET:  # a line per routing table and per rollout step would bury the table
            logger = logging.getLogger(name)
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.WARNING)
        # The real fleet first: its worker's periodic tasks (the prober, the reconciler) would
        # otherwise spend minutes on the simulated servers the fleet-scale part leaves registered.
        if {"overhead", "breach", "promote"} & set(parts):
            real_fleet(spec, rounds, parts, out, result)
        if "fleet" in parts:
            t0 = time.perf_counter()
            fleet_scale(spec, out, result)
            result.seconds["fleet scale"] = time.perf_counter() - t0
    result.load_average.append(os.getloadavg())
    result.final = _final(spec, result)
    _report(out, spec, result)
    return result


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def _final(spec: Size, r: Result) -> dict[str, str]:
    final = {}
    if r.overhead:
        over = [x.overhead_s for x in r.overhead]
        net = [x.overhead_net_s for x in r.overhead]
        pauses = sum(x.pauses for x in r.overhead)
        final["rollout_overhead_s"] = (
            f"{statistics.median(over):.2f} (goal: <= {GOAL_OVERHEAD_S:g} s; median of {len(over)} rollouts on the real "
            f"fleet, min-max {_spread(over)}; wall create to retired minus {r.overhead[0].bakes_s:g} s of bakes minus "
            f"green's recorded Triton load time; {pauses} paused for lack of data)")
        final["rollout_overhead_net_s"] = (
            f"{statistics.median(net):.2f} (goal: none; the same minus the {r.overhead[0].intervals_s:g} s of gate "
            f"intervals the plan counts, one a step; min-max {_spread(net)})")
        final["rollout_to_succeeded_s"] = (
            f"{statistics.median(x.to_succeeded_s for x in r.overhead):.2f} (goal: none; median wall to succeeded, "
            f"bakes and load included)")
    if r.fleet:
        by_size = {n: [x.overhead_s for x in r.fleet if x.fleet_size == n] for n in sorted({x.fleet_size for x in r.fleet})}
        sizes = list(by_size)
        medians = {n: statistics.median(values) for n, values in by_size.items()}
        for n, values in by_size.items():
            goal = f"<= {GOAL_FLEET_S:g} s" if n == max(sizes) and n >= 1000 else "none"
            final[f"fleet_overhead_s_{n}"] = (
                f"{medians[n]:.2f} (goal: {goal}; {n} simulated servers, green on {n - n // 2}; median of "
                f"{len(values)}, min-max {_spread(values)}; wall minus bakes minus the simulator's "
                f"{r.fleet_info.get('load_seconds', 0):g} s load)")
        lo, hi = min(sizes), max(sizes)
        ratio = medians[hi] / medians[lo] if medians[lo] > 0 else float("inf")
        final["fleet_overhead_growth"] = (
            f"{ratio:.2f}x (goal: sub-linear, well under {hi / lo:g}x; N={hi} over N={lo}, medians; "
            f"placement concurrency {r.fleet_info.get('placement concurrency')})")
    guarded = [b for b in r.breaches if b.kind == "breach"]
    if guarded:
        timed = [b.seconds for b in guarded if b.seconds is not None]
        mechanisms = Counter(b.mechanism for b in guarded)
        final["breach_to_blue_s"] = (
            f"{_fmt(statistics.median(timed) if timed else None)} (goal: <= {GOAL_BREACH_S:g} s; median of {len(timed)} "
            f"of {len(guarded)} rounds, worst {_fmt(max(timed) if timed else None)}; first failed response to the last "
            f"answer not from blue; mechanism: {', '.join(f'{k} {v}' for k, v in mechanisms.items())})")
        final["breach_blue_failures"] = (
            f"{sum(b.blue_failed for b in guarded)} (goal: 0; failed answers not from green during the breach rounds)")
    gate_only = [b for b in r.breaches if b.kind != "breach"]
    if gate_only:
        timed = [b.seconds for b in gate_only if b.seconds is not None]
        final["breach_to_blue_s_gate_only"] = (
            f"{_fmt(statistics.median(timed) if timed else None)} (goal: none, the reference; guard off: the Prometheus "
            f"gate after a {spec.bake_s} s bake; worst {_fmt(max(timed) if timed else None)}; mechanism: "
            f"{', '.join(sorted({b.mechanism for b in gate_only}))})")
    if r.promotes:
        timed = [p.seconds for p in r.promotes if p.seconds is not None]
        final["promote_to_green_s"] = (
            f"{_fmt(statistics.median(timed) if timed else None, 3)} (goal: <= {GOAL_PROMOTE_S:g} s; median of "
            f"{len(timed)} of {len(r.promotes)} rounds, worst {_fmt(max(timed) if timed else None, 3)}; from the "
            f"REST call's return to the last answer not from green; the call itself took "
            f"{statistics.median(p.call_s for p in r.promotes):.3f} s median)")
    if r.overhead or r.promotes:
        final["rollout_failed_requests"] = (
            f"{r.failed_elsewhere} (goal: 0; of {r.answers} answers through the gateway, outside the breach rounds)")
    return final


def _report(out, spec: Size, r: Result) -> None:
    la = " -> ".join(" ".join(f"{v:.1f}" for v in avg) for avg in r.load_average)
    print(f"Rollouts, size {r.size}, {os.cpu_count()} cores, load average {la}", file=out)
    if r.fleet:
        print(f"fleet scale (simulated Triton, driven in process, gates answered by a stand-in for Prometheus, no "
              f"gateway replica; {', '.join(f'{k} {v}' for k, v in r.fleet_info.items())}):", file=out)
        _rollout_table(out, r.fleet)
    if r.overhead:
        print(f"real fleet (2 tritonservers, gateway, Prometheus at 1 s, a Celery worker; linear {STEP_PERCENT}% steps, "
              f"bake {spec.bake_s} s each, gates every 1 s):", file=out)
        _rollout_table(out, r.overhead)
    for title, rows in (("breach to blue", r.breaches), ("promote to green", r.promotes)):
        if not rows:
            continue
        print(f"{title}:", file=out)
        print(f"  {'kind':<18} {'seconds':>8} {'call s':>7} {'failed':>6} {'mechanism':<9} {'state':<12} reason", file=out)
        for s in rows:
            print(f"  {s.kind:<18} {_fmt(s.seconds, 3):>8} {_fmt(s.call_s, 3):>7} {s.failed:>6} {s.mechanism:<9} "
                  f"{s.state:<12} {s.detail}", file=out)
    print("phases took " + ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items()), file=out)
    for name, value in r.final.items():
        print(f"{name}: {value}", file=out)
    out.flush()


def _rollout_table(out, rows: list[Rollout]) -> None:
    """One line per rollout, then the median time in each state (provisioning beyond the load,
    baking beyond the bakes)."""
    shown = [p for p in PHASES if any(abs(x.phases.get(p, 0)) >= 0.0005 for x in rows)]
    print(f"  {'where':<7} {'green':>5} {'servers':>7} {'wall':>6} {'bakes':>5} {'load':>5} {'overhead':>8} {'net':>6} "
          f"{'unload':>6} {'audit':>5} {'builds':>6} {'build s':>7} " + " ".join(f"{p[:9]:>9}" for p in shown), file=out)
    for x in rows:
        print(f"  {x.where:<7} {'v' + str(x.green):>5} {x.servers:>7} {x.wall_s:6.2f} {x.bakes_s:5.1f} {x.load_s:5.2f} "
              f"{x.overhead_s:8.2f} {x.overhead_net_s:6.2f} {_fmt(x.unload_s):>6} {_fmt(x.audit_events, 0):>5} "
              f"{_fmt(x.table_builds, 0):>6} {_fmt(x.table_build_s):>7} "
              + " ".join(f"{x.phases.get(p, 0):9.3f}" for p in shown), file=out)
    print("  seconds; net = overhead minus one gate interval a step; audit = audit events the rollout wrote; builds = "
          "routing-table builds during it (one per commit that asks to publish) and their time; the state columns are "
          "the time spent in each (provisioning minus the load, baking minus the bakes, create = the create call)",
          file=out)


def main(size: str = "full", rounds: int | None = None) -> int:
    # Stopped with SIGTERM (or SIGINT from a shell that ignores it in background jobs), the run
    # still stops its processes and drops its database.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupted)
    return run_in_own_database(run, size=size, rounds=rounds)


def _interrupted(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:2] or ["full"])))
