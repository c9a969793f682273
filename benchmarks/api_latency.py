"""API and UI latency: the main pages and list endpoints, on an empty database and on a seeded one.

Target (ARCHITECTURE.md, "Performance targets"; issue 12): p95 of 100 ms or less per page with 10k
versions, 1k servers, 500 endpoints and 5k past deployments (with their transitions and gate
evaluations), and a query count per page that does not grow with the data. The deployment pages
(the overview, its polled deployments part, the Deployments list, a deployment's page and its live
part) are timed without their charts, which load apart from the series API.

How it measures:

* In process, with ``django.test.Client`` signed in as a deployer (a real session). This times
  URL routing, middleware, the views, the database and template/JSON rendering; it leaves out
  the WSGI server and the network.
* Phase "empty": the signed-in deployer, its team, one model without versions (the detail URLs
  need a model), and one deployment baking on an endpoint of a second model (the deployment URLs
  need one) with no history yet. This is the reference in the same run.
* Phase "1 row": one version, one pool with one server, one audit event, one transition and one
  gate evaluation of that deployment, one gateway replica. Query counts only: on a truly empty
  page Django skips the query for the (empty) page slice, so "growth" is counted from here, where
  every page renders at least one row.
* Phase "seeded": teams, models, versions (one model with many), servers in pools with a
  realistic repository index, audit events; endpoints with their blue's GPU reservations and
  each team's quota; past deployments along the worker's path (retired, rolled back, aborted,
  failed, cancelled) with every transition and gate evaluation, deployments in progress in
  every state and scheduled ones, the timed deployment's long history (an hour of analysis);
  gateway replicas, one behind. Then ``ANALYZE``, as autovacuum would.
* Each phase: one warm-up pass, one pass under ``CaptureQueriesContext`` for the query count,
  then ``rounds`` timed passes over all pages in turn (interleaved, so that noise from this
  shared machine spreads over all pages alike).

Not measured yet: "30 days of metrics". Switchyard stores no metrics yet; add rollups to the
seed and chart pages to the list when they exist.

``main()`` creates and drops its own database (Django's test-database machinery: PostgreSQL when
DATABASE_URL points at PostgreSQL, a temporary SQLite file otherwise). ``run()`` works on whatever
database is current; the smoke test calls it inside pytest's test database.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta

GOAL_P95_MS = 100.0


@dataclass(frozen=True)
class Size:
    teams: int
    models: int
    versions: int  # in all, across all models
    hot_versions: int  # of those, on the one model whose detail pages are timed
    pools: int
    servers: int
    audit_events: int
    rounds: int
    endpoints: int  # in all, with the one of the timed deployment
    past_deployments: int  # finished: retired, rolled back, aborted, failed, cancelled
    active_deployments: int  # in progress, over every team (the deployer sees its teams' share)
    scheduled_deployments: int
    target_transitions: int  # the timed deployment's own history...
    target_evaluations: int  # ...and gate evaluations (two gates every 10 s: 720 an hour)
    deployer_teams: int = 3  # how many of the teams the signed-in deployer belongs to


SIZES = {
    "full": Size(teams=10, models=200, versions=10_000, hot_versions=2_000, pools=10, servers=1_000, audit_events=20_000,
                 rounds=30, endpoints=500, past_deployments=5_000, active_deployments=30, scheduled_deployments=15,
                 target_transitions=40, target_evaluations=720),
    "small": Size(teams=4, models=40, versions=1_000, hot_versions=200, pools=4, servers=100, audit_events=2_000,
                  rounds=10, endpoints=50, past_deployments=500, active_deployments=10, scheduled_deployments=5,
                  target_transitions=20, target_evaluations=200),
    "tiny": Size(teams=2, models=4, versions=20, hot_versions=8, pools=2, servers=10, audit_events=40, rounds=2,
                 endpoints=4, past_deployments=10, active_deployments=2, scheduled_deployments=1,
                 target_transitions=4, target_evaluations=10, deployer_teams=1),
}

# (label, URL template). {model} is the model with many versions, {deployment} the timed deployment.
PAGES = [
    ("ui /", "/"),
    ("ui /?part=deployments", "/?part=deployments"),
    ("ui /deployments/", "/deployments/"),
    ("ui /deployments/?part=plan", "/deployments/?part=plan"),
    ("ui /deployments/?plan=open", "/deployments/?plan=open"),  # the form in the page (no script): for reference
    ("ui /deployments/<id>/", "/deployments/{deployment}/"),
    ("ui /deployments/<id>/live/", "/deployments/{deployment}/live/"),
    ("ui /models/", "/models/"),
    ("ui /models/<id>/", "/models/{model}/"),
    ("ui /fleet/", "/fleet/"),
    ("ui /audit/", "/audit/"),
    ("api /api/v1/models/", "/api/v1/models/"),
    ("api /api/v1/models/<id>/versions/", "/api/v1/models/{model}/versions/"),
    ("api /api/v1/servers/", "/api/v1/servers/"),
    ("api /api/v1/pools/", "/api/v1/pools/"),
]

PHASES = ("empty", "1 row", "seeded")


@dataclass
class PageResult:
    label: str
    path: str
    times_ms: dict[str, list[float]] = field(default_factory=dict)  # phase -> samples
    queries: dict[str, int] = field(default_factory=dict)  # phase -> count
    # phase -> CPU ms spent by this process and by its database backend over the timed requests
    cpu_ms: dict[str, float] = field(default_factory=dict)

    def cpu_per_request(self, phase: str) -> float | None:
        if phase not in self.cpu_ms or not self.times_ms.get(phase):
            return None
        return self.cpu_ms[phase] / len(self.times_ms[phase])

    def median(self, phase: str) -> float:
        return statistics.median(self.times_ms[phase])

    def p95(self, phase: str) -> float:
        return percentile(self.times_ms[phase], 95)

    @property
    def growth(self) -> int:
        return self.queries["seeded"] - self.queries["1 row"]


@dataclass
class Result:
    size: str
    counts: dict[str, int]
    pages: list[PageResult]
    final: dict[str, str]  # name -> "value (goal: ...)"
    seconds: dict[str, float]


def percentile(samples: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --------------------------------------------------------------------------------------------
# Seeding


def _sha(*parts) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


TENSORS_IN = [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [3, 224, 224]}]
TENSORS_OUT = [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [1000]}]
BACKENDS = ["onnxruntime", "pytorch", "tensorrt", "python", "tensorflow"]
ARTIFACT = {"onnxruntime": "model.onnx", "pytorch": "model.pt", "tensorrt": "model.plan", "python": "model.py", "tensorflow": "model.savedmodel/saved_model.pb"}
EXTENSIONS = ["classification", "sequence", "model_repository", "model_repository(unload_dependents)", "schedule_policy", "model_configuration", "system_shared_memory", "cuda_shared_memory", "binary_tensor_data", "parameters", "statistics", "trace", "logging"]


@dataclass
class Base:
    user: object
    team: object
    model: object
    deployment: object  # the timed deployment, on an endpoint of a second model (its versions: 1 and 2)


BASE_VERSIONS = 2  # of the deployed model, counted in Size.versions


def seed_base() -> Base:
    """Phase "empty": the deployer, its team, one model (no versions) for the model URLs, and one
    deployment baking step 1 (no history yet) for the deployment URLs."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from controlplane.accounts.models import Membership, Role, Team
    from controlplane.endpoints.models import Endpoint
    from controlplane.registry.models import Model

    user = get_user_model()(username="bench-deployer")
    user.set_unusable_password()
    user.save()
    team = Team.objects.create(slug="bench-00", display_name="Bench team 0")
    Membership.objects.create(user=user, team=team, role=Role.DEPLOYER)
    model = Model.objects.create(
        team=team, name="model-000", backend="onnxruntime", max_batch_size=8, inputs=TENSORS_IN,
        outputs=TENSORS_OUT, description="The model with many versions.", created_by=user,
    )
    served = Model.objects.create(
        team=team, name="fraud-scorer", backend="python", max_batch_size=8, inputs=TENSORS_IN, outputs=TENSORS_OUT,
        description="The model of the timed deployment.", created_by=user,
    )
    blue, green = (_version(served, n, user) for n in (1, 2))
    blue.save(), green.save()
    endpoint = Endpoint.objects.create(team=team, name="fraud", model=served, kind="label", label="stable", created_by=user)
    now = timezone.now()
    deployment = _deployment(endpoint, blue, green, state="baking", step_index=0, user=user, at=now, index=0)
    deployment.step_started_at = now
    deployment.save()
    return Base(user=user, team=team, model=model, deployment=deployment)


# A linear rollout of three steps, the shape of every seeded deployment.
DEPLOY_STEPS = [{"percent": 10, "bake_s": 300}, {"percent": 50, "bake_s": 600}, {"percent": 100, "bake_s": 600}]
GATE_LIMITS = {"error_ratio": 0.05, "p99_ms": 250.0}
_PLAN: dict = {}


def _plan() -> dict:
    """One realistic stored plan (what deployment_create keeps), computed once."""
    if not _PLAN:
        from controlplane.deployments.planning import make_plan
        from controlplane.deployments.spec import Step

        plan = make_plan(steps=tuple(Step(**s) for s in DEPLOY_STEPS), interval_s=10, approval_required=False,
                         rollback_window_s=900, load_s=40.0, quota=8, held={(1, 0), (1, 1)},
                         green_devices={(2, 0), (2, 1)}, other_devices=set())
        _PLAN.update(plan.as_dict(), green_versions=[2], green_devices=[[2, 0], [2, 1]], blue_versions=[1], blue_variants=[])
    return _PLAN


def _deployment(endpoint, blue, green, *, state: str, step_index: int, user, at, index: int, start_at=None) -> object:
    from controlplane.deployments.models import Deployment
    from controlplane.deployments.spec import Gates

    traffic = DEPLOY_STEPS[step_index]["percent"] if 0 <= step_index and state not in FINISHED_AT_ZERO else 0
    finished = state in ("retired", "rolled_back", "aborted", "failed", "cancelled")
    return Deployment(
        team=endpoint.team, endpoint=endpoint, model=endpoint.model, blue_version=blue, green_version=green,
        strategy="linear", steps=DEPLOY_STEPS, placement_mode=["same_servers", "new_servers"][index % 2],
        servers=[{"id": 1 + index % 7, "name": f"triton-{index % 7:04d}"}, {"id": 8 + index % 7, "name": f"triton-{7 + index % 7:04d}"}],
        gates=Gates(max_error_ratio=GATE_LIMITS["error_ratio"], max_p99_ms=GATE_LIMITS["p99_ms"]).as_dict(),
        rollback_window_s=900, reason=f"release {index}: retrained on the week's data", plan=_plan(),
        state=state, state_changed_at=at, step_index=step_index, traffic_percent=traffic, start_at=start_at,
        status_text="" if state != "rolled_back" else "error_ratio fail (0.12 > 0.05) twice in a row",
        created_by=user, started_at=None if state in ("scheduled", "cancelled") else at - timedelta(minutes=40),
        succeeded_at=at - timedelta(minutes=15) if state in ("succeeded", "retired") else None,
        finished_at=at if finished else None, next_run_at=start_at or at,
    )


FINISHED_AT_ZERO = {"rolled_back", "aborted", "failed", "cancelled", "pending", "validating", "provisioning", "verifying",
                    "scheduled"}
_PREPARE = [("", "pending", "create", 0), ("pending", "validating", "begin", 0), ("validating", "provisioning", "ok", 0),
            ("provisioning", "verifying", "ok", 0)]


def _steps(count: int) -> list[tuple[str, str, str, int]]:
    out, previous = [], "verifying"
    for i in range(count):
        share = DEPLOY_STEPS[i]["percent"]
        out += [(previous, "shifting", "ok" if i == 0 else "pass", share), ("shifting", "baking", "ok", share),
                ("baking", "analyzing", "ok", share)]
        previous = "analyzing"
    return out


def deployment_path(final: str) -> tuple[list[tuple[str, str, str, int]], int]:
    """A finished deployment's transitions along the worker's path, (from, to, event, green's share)
    each, and how many steps had their gates evaluated."""
    if final == "retired":
        return _PREPARE + _steps(3) + [("analyzing", "promoting", "last_pass", 100), ("promoting", "succeeded", "ok", 100),
                                       ("succeeded", "retired", "retire", 100)], 3
    if final == "rolled_back":  # a gate breached on step 2
        return _PREPARE + _steps(2) + [("analyzing", "rolling_back", "breach", 50), ("rolling_back", "rolled_back", "ok", 0)], 2
    if final == "aborted":
        return _PREPARE + _steps(1) + [("analyzing", "rolling_back", "abort", 10), ("rolling_back", "aborted", "ok", 0)], 1
    if final == "failed":
        return _PREPARE[:2] + [("validating", "rolling_back", "error", 0), ("rolling_back", "failed", "ok", 0)], 0
    if final == "cancelled":
        return [("", "scheduled", "create", 0), ("scheduled", "cancelled", "cancel", 0)], 0
    raise ValueError(final)


PAST_MIX = ["retired"] * 12 + ["rolled_back"] * 4 + ["aborted", "aborted", "failed", "cancelled"]  # of every 20
MOVING_STATES = ["shifting", "baking", "analyzing", "paused", "awaiting_approval", "promoting", "succeeded",
                 "rolling_back", "validating", "provisioning", "verifying", "pending", "rollback_failed"]


def _transitions(d, path, *, end, user) -> list:
    from controlplane.deployments.models import DeploymentTransition

    n = len(path)
    return [
        DeploymentTransition(
            deployment=d, from_state=old, to_state=new, event=event,
            actor_name=user.username if event in ("create", "abort", "cancel") else "worker",
            source="ui" if event in ("create", "abort", "cancel") else "worker",
            reason=d.reason if event == "create" else f"{event}: step {max(0, k // 3 - 1)}",
            detail={"traffic_percent": share}, at=end - timedelta(seconds=60 * (n - k)),
        )
        for k, (old, new, event, share) in enumerate(path)
    ]


def _evaluations(d, steps: int, *, end, per_gate: int, breach_last: bool = False) -> list:
    from controlplane.deployments.models import GateEvaluation

    rows = []
    for step in range(steps):
        for k in range(per_gate):
            t = end - timedelta(seconds=10 * ((steps - step) * per_gate - k))
            failing = breach_last and step == steps - 1 and k >= per_gate - 2
            for gate, limit in GATE_LIMITS.items():
                value = (0.12 if failing else 0.004 + 0.001 * (k % 5)) if gate == "error_ratio" else 120.0 + 7 * (k % 9)
                verdict = "fail" if failing and gate == "error_ratio" else "pass"
                rows.append(GateEvaluation(
                    deployment=d, step_index=step, gate=gate, value=value, limit=limit, requests=800 + 13 * k, window_s=60,
                    verdict=verdict, detail=f"{value:.4g} {'>' if verdict == 'fail' else '≤'} {limit:.4g}", at=t))
    return rows


def _version(model, number: int, user) -> object:
    from controlplane.registry.models import ModelVersion, VersionStatus

    path = ARTIFACT[model.backend]
    size = 1_000_000 + (number * 7919) % 50_000_000
    return ModelVersion(
        model=model, version=number, status=VersionStatus.READY,
        artifact_uri=f"s3://switchyard-models/repo/{model.team.slug}.{model.name}/{number}/",
        checksum="sha256:" + _sha(model.pk, number),
        size_bytes=size, files=[{"path": path, "size": size, "sha256": _sha(model.pk, number, path)}],
        metadata={"git_sha": _sha(number)[:12], "trained_on": "2026-10-01"}, created_by=user,
    )


def _server(index: int, pool) -> object:
    from django.utils import timezone

    from controlplane.fleet.models import Server

    status = "up" if index % 20 else ("down" if index % 40 else "not_ready")
    now = timezone.now()
    return Server(
        name=f"triton-{index:04d}", pool=pool,
        http_url=f"http://10.{index // 250 % 250}.{index % 250}.10:8000",
        grpc_url=f"10.{index // 250 % 250}.{index % 250}.10:8001",
        metrics_url=f"http://10.{index // 250 % 250}.{index % 250}.10:8002/metrics",
        gpu_type=["A100", "H100", "L4"][index % 3], gpu_count=[1, 2, 4, 8][index % 4],
        labels={"zone": f"eu-{index % 3 + 1}a", "rack": f"r{index % 17}"},
        status=status, is_live=status != "down", is_ready=status == "up", triton_version="2.52.0",
        extensions=EXTENSIONS, last_probe_at=now, last_seen_at=now if status != "down" else now - timedelta(minutes=3),
        last_error="" if status != "down" else "Could not reach http://10.0.0.1:8000/v2/health/live: connection refused",
    )


def _repository_index(index: int, triton_names: list[str]) -> list[dict]:
    """A few models per server, the odd one failing to load, as Triton's index reports them."""
    entries = []
    for k in range(3 + index % 3):
        name = triton_names[(index * 7 + k * 13) % len(triton_names)]
        if k == 3 and index % 5 == 0:
            entries.append({"name": name, "version": str(1 + k), "state": "UNAVAILABLE", "reason": "failed to load 'model.plan': CUDA out of memory"})
        else:
            entries.append({"name": name, "version": str(1 + (index + k) % 9), "state": "READY", "reason": ""})
    entries.append({"name": triton_names[(index * 3) % len(triton_names)] + "-old", "version": "", "state": "", "reason": ""})
    return entries


def _audit_event(index: int, *, user, team, object_type: str, object_id, object_repr: str, action: str) -> object:
    from controlplane.audit.models import AuditEvent

    return AuditEvent(
        actor_user=user, actor_name=user.username if user else "system", source=["api", "ui", "cli", "worker"][index % 4],
        request_id=_sha("req", index)[:32], ip="10.1.2.3", team=team, object_type=object_type, object_id=str(object_id),
        object_repr=object_repr, action=action, before=None if index % 3 else {"status": "registering"},
        after={"version": index % 50 + 1, "checksum": "sha256:" + _sha(index)}, reason="" if index % 4 else "nightly retrain",
    )


def seed_one_row(base: Base) -> None:
    """Phase "1 row": one of each object, so that every page renders a row."""
    from controlplane.fleet.models import Pool

    _version(base.model, 1, base.user).save()
    pool = Pool.objects.create(name="pool-00", description="Benchmark pool 0")
    server = _server(0, pool)
    server.repository_index = _repository_index(0, [base.model.triton_name])
    server.save()
    _audit_event(0, user=base.user, team=base.team, object_type="registry.model", object_id=base.model.pk,
                 object_repr=str(base.model), action="model.create").save()
    from django.utils import timezone

    from controlplane.deployments.models import DeploymentTransition, GateEvaluation
    from controlplane.endpoints.models import GatewayReplica, RoutingTableState

    now = timezone.now()
    d = base.deployment
    DeploymentTransition.objects.bulk_create(_transitions(d, _PREPARE[:1], end=now, user=base.user))
    GateEvaluation.objects.bulk_create(_evaluations(d, 1, end=now, per_gate=1)[:1])
    RoutingTableState.objects.update_or_create(pk=1, defaults={"version": 7, "published_at": now})
    GatewayReplica.objects.create(replica_id="gw-0-w0", address="10.9.0.1:8080", table_version=7, last_seen_at=now)


def seed_bulk(base: Base, size: Size) -> dict[str, int]:
    """Phase "seeded": everything else, in bulk. A benchmark fixture, not a way to write data."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from controlplane.accounts.models import Membership, Role, Team
    from controlplane.audit.models import AuditEvent
    from controlplane.fleet.models import Pool, Server
    from controlplane.registry.models import Model, ModelVersion

    User = get_user_model()
    batch = 1000
    with transaction.atomic():
        others = User.objects.bulk_create([User(username=f"bench-user-{i}", password="!") for i in range(5)])
        users = [base.user, *others]
        teams = [base.team, *Team.objects.bulk_create(
            [Team(slug=f"bench-{i:02d}", display_name=f"Bench team {i}") for i in range(1, size.teams)]
        )]
        Membership.objects.bulk_create(
            [Membership(user=base.user, team=t, role=Role.DEPLOYER) for t in teams[1:size.deployer_teams]]
            + [Membership(user=u, team=teams[i % len(teams)], role=Role.VIEWER) for i, u in enumerate(others)]
        )
        models = [base.model, *Model.objects.bulk_create([
            Model(team=teams[i % len(teams)], name=f"model-{i:03d}", backend=BACKENDS[i % len(BACKENDS)],
                  max_batch_size=[0, 8, 32][i % 3], inputs=TENSORS_IN, outputs=TENSORS_OUT,
                  description=f"Benchmark model {i}", created_by=users[i % len(users)])
            for i in range(1, size.models)
        ], batch_size=batch)]

        # One model gets hot_versions (it already has v1); the rest are spread over the others.
        rows = [_version(base.model, n, users[n % len(users)]) for n in range(2, size.hot_versions + 1)]
        rest = size.versions - size.hot_versions - BASE_VERSIONS
        next_number = {m.pk: 1 for m in models[1:]}
        for i in range(rest):
            m = models[1 + i % (len(models) - 1)]
            rows.append(_version(m, next_number[m.pk], users[i % len(users)]))
            next_number[m.pk] += 1
        ModelVersion.objects.bulk_create(rows, batch_size=batch)

        pools = [Pool.objects.get(name="pool-00"), *Pool.objects.bulk_create(
            [Pool(name=f"pool-{i:02d}", description=f"Benchmark pool {i}") for i in range(1, size.pools)]
        )]
        triton_names = [m.triton_name for m in models]
        servers = []
        for i in range(1, size.servers):
            server = _server(i, pools[i % len(pools)])
            server.repository_index = _repository_index(i, triton_names)
            servers.append(server)
        Server.objects.bulk_create(servers, batch_size=batch)

        events = []
        for i in range(1, size.audit_events):
            kind = i % 10
            if kind == 0:  # platform-wide: fleet changes, no team
                s = servers[i % len(servers)] if servers else None
                events.append(_audit_event(i, user=None, team=None, object_type="fleet.server", object_id=i % size.servers + 1,
                                           object_repr=s.name if s else "triton-0000", action="server.probe"))
            elif kind in (1, 2):  # the hot model's history
                events.append(_audit_event(i, user=base.user, team=base.team, object_type="registry.model", object_id=base.model.pk,
                                           object_repr=str(base.model), action="model.update"))
            else:
                m = models[i % len(models)]
                events.append(_audit_event(i, user=users[i % len(users)], team=m.team, object_type="registry.modelversion",
                                           object_id=i, object_repr=f"{m} v{i % 50 + 1}", action="version.register"))
        AuditEvent.objects.bulk_create(events, batch_size=batch)
        deployment_counts = seed_deployments(base, size, users=users, teams=teams, models=models[1:],
                                             servers=[Server.objects.get(name="triton-0000"), *servers], batch=batch)

    with connection.cursor() as cursor:  # fresh planner statistics, as autovacuum would give
        cursor.execute("ANALYZE")
    return {
        "teams": Team.objects.count(), "models": Model.objects.count(), "versions": ModelVersion.objects.count(),
        "hot model versions": base.model.versions.count(), "pools": Pool.objects.count(),
        "servers": Server.objects.count(), "audit events": AuditEvent.objects.count(), **deployment_counts,
    }


def seed_deployments(base: Base, size: Size, *, users, teams, models, servers, batch: int) -> dict[str, int]:
    """Endpoints (one per model in turn) with their blue's GPU reservation and each team's quota;
    past deployments along the worker's path with their transitions and gate evaluations, spread
    over the last 30 days; deployments in progress in every state and scheduled ones, each on an
    endpoint of its own (a deployment holds its endpoint); the timed deployment's long history;
    gateway replicas. In bulk, like the rest of the seed."""
    from django.utils import timezone

    from controlplane.deployments.models import Deployment, DeploymentTransition, GateEvaluation
    from controlplane.endpoints.models import Endpoint, GatewayReplica, RoutingTableState
    from controlplane.quotas.models import GpuQuota, Reservation
    from controlplane.registry.models import ModelVersion

    now = timezone.now()
    pairs: dict[int, tuple] = {}  # model id -> (blue, green): its two newest versions
    for version in ModelVersion.objects.filter(model__in=models).select_related("model__team").order_by("model_id", "-version"):
        found = pairs.setdefault(version.model_id, [])
        if len(found) < 2:
            found.insert(0, version)
    deployable = [m for m in models if len(pairs.get(m.pk, ())) == 2]
    endpoints = Endpoint.objects.bulk_create([
        Endpoint(team=m.team, name=f"ep-{i:03d}", model=m, kind="label", label="stable", created_by=users[i % len(users)],
                 description=f"Benchmark endpoint {i}")
        for i, m in ((i, deployable[i % len(deployable)]) for i in range(size.endpoints - 1))
    ], batch_size=batch)
    GpuQuota.objects.bulk_create([GpuQuota(team=t, gpus=16 + 8 * (i % 3)) for i, t in enumerate(teams)])
    Reservation.objects.bulk_create([
        Reservation(team=e.team, gpus=1, devices=[i % 4], kind="placement", version=pairs[e.model_id][0],
                    server=servers[i % len(servers)], server_name=servers[i % len(servers)].name)
        for i, e in enumerate(endpoints)
    ], batch_size=batch)

    # In progress and scheduled: each on an endpoint of its own; the rest of the endpoints' history is past.
    moving = [
        _deployment(e, *pairs[e.model_id], state=MOVING_STATES[i % len(MOVING_STATES)], step_index=i % 3,
                    user=users[i % len(users)], at=now - timedelta(minutes=i), index=i)
        for i, e in enumerate(endpoints[:size.active_deployments])
    ]
    for d in moving:
        if d.state in ("pending", "validating", "provisioning", "verifying"):
            d.step_index, d.traffic_percent = -1, 0
        d.step_started_at = now - timedelta(seconds=40)
    scheduled = [
        _deployment(e, *pairs[e.model_id], state="scheduled", step_index=-1, user=users[i % len(users)], at=now, index=i,
                    start_at=now + timedelta(hours=1 + i))
        for i, e in enumerate(endpoints[size.active_deployments:size.active_deployments + size.scheduled_deployments])
    ]
    past = []
    for i in range(size.past_deployments):
        e = endpoints[i % len(endpoints)]
        at = now - timedelta(days=30) + timedelta(seconds=(30 * 86400 - 3600) * i / max(size.past_deployments, 1))
        past.append(_deployment(e, *pairs[e.model_id], state=PAST_MIX[i % len(PAST_MIX)], step_index=2, user=users[i % len(users)],
                                at=at, index=i))
    for d in past:
        d.step_index = {"retired": 2, "rolled_back": 1, "aborted": 0}.get(d.state, -1)
    Deployment.objects.bulk_create(past + moving + scheduled, batch_size=batch)

    transitions, evaluations = [], []
    for d in past:
        path, analyzed = deployment_path(d.state)
        transitions += _transitions(d, path, end=d.state_changed_at, user=users[d.pk % len(users)])
        evaluations += _evaluations(d, analyzed, end=d.state_changed_at, per_gate=1 + d.pk % 3,
                                    breach_last=d.state == "rolled_back")
    for d in moving:
        steps = d.step_index + 1
        path = _PREPARE + _steps(steps) if steps else _PREPARE[:2]
        if path[-1][1] != d.state:
            path.append((path[-1][1], d.state, "ok", d.traffic_percent))
        transitions += _transitions(d, path, end=now, user=users[d.pk % len(users)])
        evaluations += _evaluations(d, steps, end=now, per_gate=6)
    for d in scheduled:
        transitions += _transitions(d, [("", "scheduled", "create", 0)], end=now, user=users[d.pk % len(users)])
    # The timed deployment: analyzing step 2 after an hour of evaluations and a pause.
    d = base.deployment
    head = _PREPARE + _steps(2)
    loops = [("analyzing", "paused", "no_data", 50), ("paused", "analyzing", "resume", 50)]
    path = head + loops * max(0, (size.target_transitions - len(head)) // 2)
    transitions += _transitions(d, path[:max(size.target_transitions, 1)], end=now, user=base.user)
    per_gate = max(1, size.target_evaluations // (2 * len(GATE_LIMITS)))
    evaluations += _evaluations(d, 2, end=now, per_gate=per_gate)
    Deployment.objects.filter(pk=d.pk).update(state="analyzing", step_index=1, traffic_percent=50, step_started_at=now - timedelta(minutes=20))
    DeploymentTransition.objects.bulk_create(transitions, batch_size=batch)
    GateEvaluation.objects.bulk_create(evaluations, batch_size=batch)

    # Two gateways of four workers each; one worker a table behind.
    RoutingTableState.objects.update_or_create(pk=1, defaults={"version": 9000, "published_at": now - timedelta(seconds=2)})
    GatewayReplica.objects.bulk_create([
        GatewayReplica(replica_id=f"gw-{g}-w{w}", address=f"10.9.0.{g + 1}:8080", table_version=9000 - (g == 1 and w == 3),
                       started_at=now - timedelta(hours=6), last_seen_at=now - timedelta(seconds=w),
                       stats={"requests": 10_000 * (w + 1), "in_flight": w, "table_source": "redis"})
        for g in range(2) for w in range(4) if (g, w) != (0, 0)
    ])
    return {
        "endpoints": Endpoint.objects.count(), "deployments": Deployment.objects.count(),
        "past deployments": len(past), "deployments in progress": len(moving) + 1, "scheduled deployments": len(scheduled),
        "transitions": DeploymentTransition.objects.count(), "gate evaluations": GateEvaluation.objects.count(),
        "timed deployment's transitions": d.transitions.count(), "timed deployment's evaluations": d.evaluations.count(),
    }


# --------------------------------------------------------------------------------------------
# Measuring


def _get(client, path: str):
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}, not 200")
    return response


def database_cpu_reader():
    """A function giving the CPU seconds the connection's PostgreSQL backend has used, when that
    backend runs on this machine (its /proc entry is readable); else None. Per request, the CPU of
    this process plus its backend's is what a page costs, whatever else the machine is running;
    wall time on a shared machine is that plus waiting for a core."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        stat = f"/proc/{cursor.fetchone()[0]}/stat"
    tick = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        with open(stat) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime and stime, fields 14 and 15 of stat

    try:
        read()
    except OSError:
        return None
    return read


def measure(client, pages: list[PageResult], phase: str, rounds: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for page in pages:  # warm-up: imports, template loading, plan caches
        _get(client, page.path)
    for page in pages:
        with CaptureQueriesContext(connection) as ctx:
            _get(client, page.path)
        page.queries[phase] = len(ctx.captured_queries)
    if rounds <= 0:
        return
    database_cpu = database_cpu_reader()
    for page in pages:
        page.times_ms[phase] = []
        page.cpu_ms[phase] = 0.0
    for _ in range(rounds):
        for page in pages:
            # The backend's counter moves in clock ticks (10 ms): summed over every round, its
            # share per request is still right on average.
            db_before = database_cpu() if database_cpu else 0.0
            cpu_before = time.process_time()
            start = time.perf_counter()
            _get(client, page.path)
            page.times_ms[phase].append((time.perf_counter() - start) * 1000)
            page.cpu_ms[phase] += (time.process_time() - cpu_before) * 1000
            if database_cpu:
                page.cpu_ms[phase] += (database_cpu() - db_before) * 1000


def run(size: str = "full", rounds: int | None = None, out=None) -> Result:
    """Seed and measure on the current database, which must hold no Switchyard data yet."""
    from django.db import connection
    from django.test import Client

    out = out or sys.stdout
    spec = SIZES[size]
    rounds = spec.rounds if rounds is None else rounds
    seconds = {}

    base = seed_base()
    client = Client()
    client.force_login(base.user)
    pages = [PageResult(label, template.format(model=base.model.pk, deployment=base.deployment.pk)) for label, template in PAGES]

    t0 = time.perf_counter()
    measure(client, pages, "empty", rounds)
    seconds["measure empty"] = time.perf_counter() - t0
    seed_one_row(base)
    measure(client, pages, "1 row", 0)
    t0 = time.perf_counter()
    counts = seed_bulk(base, spec)
    seconds["seed"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    measure(client, pages, "seeded", rounds)
    seconds["measure seeded"] = time.perf_counter() - t0

    final = _final(pages)
    _report(out, size, rounds, connection.vendor, counts, pages, final, seconds)
    return Result(size=size, counts=counts, pages=pages, final=final, seconds=seconds)


def _cpu_final(pages: list[PageResult]) -> dict[str, str]:
    if any(p.cpu_per_request("seeded") is None for p in pages):
        return {}
    worst = max(pages, key=lambda p: p.cpu_per_request("seeded"))
    return {"api_ui_cpu_ms_worst": f"{worst.cpu_per_request('seeded'):.1f} (goal: none, for reference: CPU per request of "
                                   f"this process and its database backend, seeded; page {worst.label})"}


def _final(pages: list[PageResult]) -> dict[str, str]:
    worst = max(pages, key=lambda p: p.p95("seeded"))
    ratio = max(pages, key=lambda p: p.median("seeded") / p.median("empty"))
    growth = sum(max(p.growth, 0) for p in pages)
    return {
        "api_ui_p95_ms_worst": f"{worst.p95('seeded'):.1f} (goal: <= {GOAL_P95_MS:.0f} ms; page {worst.label})",
        "api_ui_median_ms_worst": f"{max(p.median('seeded') for p in pages):.1f} (goal: none, for reference)",
        "api_ui_median_seeded_over_empty_worst": f"{ratio.median('seeded') / ratio.median('empty'):.2f}x (goal: none, reference is the empty database; page {ratio.label})",
        "pages_over_goal": f"{sum(p.p95('seeded') > GOAL_P95_MS for p in pages)} (goal: 0)",
        **_cpu_final(pages),
        "query_count_growth": f"{growth} (goal: 0)",
        "metrics_30_days": "skipped (goal: seeded once metrics exist; there are no metrics yet)",
    }


def _cpu(p: PageResult) -> str:
    empty, seeded = p.cpu_per_request("empty"), p.cpu_per_request("seeded")
    return "-" if empty is None or seeded is None else f"{empty:.1f}/{seeded:.1f}"


def _report(out, size, rounds, vendor, counts, pages, final, seconds) -> None:
    w = max(len(p.label) for p in pages)
    print(f"API and UI latency, size {size}, {rounds} timed requests per page and phase, in process "
          f"(django.test.Client, session of a deployer), database {vendor}, {os.cpu_count()} cores", file=out)
    print("seeded: " + ", ".join(f"{v} {k}" for k, v in counts.items()), file=out)
    print(f"{'page':<{w}}  {'empty med':>9} {'p95':>7}  {'seeded med':>10} {'p95':>7} {'min-max':>13}  {'x empty':>7}  "
          f"{'cpu e/s':>11}  queries e/1/s", file=out)
    for p in pages:
        s = p.times_ms["seeded"]
        spread = f"{min(s):.1f}-{max(s):.1f}"
        q = p.queries
        flag = "" if p.growth == 0 else f"  GROWS by {p.growth}"
        print(f"{p.label:<{w}}  {p.median('empty'):9.1f} {p.p95('empty'):7.1f}  {p.median('seeded'):10.1f} {p.p95('seeded'):7.1f} "
              f"{spread:>13}  {p.median('seeded') / p.median('empty'):6.2f}x  {_cpu(p):>11}  "
              f"{q['empty']}/{q['1 row']}/{q['seeded']}{flag}", file=out)
    print("times in ms; x empty = seeded median / empty median; cpu e/s = mean CPU ms per request, this process and its "
          "database backend, empty / seeded; queries e/1/s = empty / one row each / seeded (an empty page skips its row query)",
          file=out)
    print("phases took " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), file=out)
    for name, value in final.items():
        print(f"{name}: {value}", file=out)
    out.flush()


# --------------------------------------------------------------------------------------------
# Standalone: own database


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    # Without a secret key the settings refuse to load unless in debug mode; DEBUG itself is
    # turned off below before anything is measured.
    if not os.environ.get("SWITCHYARD_SECRET_KEY"):
        os.environ.setdefault("SWITCHYARD_DEBUG", "true")
    import django

    django.setup()


@contextlib.contextmanager
def own_database(verbosity: int = 0):
    """Create a database of our own with Django's test machinery, and drop it afterwards."""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    test = connection.settings_dict.setdefault("TEST", {})
    tmpdir = None
    if connection.vendor == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix="switchyard-bench-")
        test["NAME"] = os.path.join(tmpdir, "bench.sqlite3")
    else:
        test["NAME"] = f"switchyard_bench_{os.getpid()}"
    old_config = setup_databases(verbosity=verbosity, interactive=False, aliases={"default"}, serialized_aliases=set())
    try:
        yield connection.settings_dict["NAME"]
    finally:
        teardown_databases(old_config, verbosity=verbosity)
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def run_in_own_database(run_benchmark, **options) -> int:
    """Set Django up for measuring, run ``run_benchmark(**options)`` in a database of its own, drop it."""
    setup_django()
    from django.conf import settings

    # What setup_test_environment() does, minus the instrumented template renderer, whose
    # signal would copy every template context and tax the timings.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.DEBUG = False
    t0 = time.perf_counter()
    with own_database() as name:
        print(f"created database {name} in {time.perf_counter() - t0:.1f} s; dropping it at the end", flush=True)
        run_benchmark(**options)
    return 0


def main(size: str = "full", rounds: int | None = None) -> int:
    return run_in_own_database(run, size=size, rounds=rounds)


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:2] or ["full"])))
