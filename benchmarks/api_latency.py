"""API and UI latency: the main pages and list endpoints, on an empty database and on a seeded one.

Target (ARCHITECTURE.md, "Performance targets"): p95 of 100 ms or less per page with 10k versions
and 1k servers, and a query count per page that does not grow with the data.

How it measures:

* In process, with ``django.test.Client`` signed in as a deployer (a real session). This times
  URL routing, middleware, the views, the database and template/JSON rendering; it leaves out
  the WSGI server and the network.
* Phase "empty": the signed-in deployer, its team and one model without versions (the detail
  URLs need a model). This is the reference in the same run.
* Phase "1 row": one version, one pool with one server, one audit event. Query counts only: on
  a truly empty page Django skips the query for the (empty) page slice, so "growth" is counted
  from here, where every page renders at least one row.
* Phase "seeded": teams, models, versions (one model with many), servers in pools with a
  realistic repository index, audit events. Then ``ANALYZE``, as autovacuum would.
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
    deployer_teams: int = 3  # how many of the teams the signed-in deployer belongs to


SIZES = {
    "full": Size(teams=10, models=200, versions=10_000, hot_versions=2_000, pools=10, servers=1_000, audit_events=20_000, rounds=30),
    "small": Size(teams=4, models=40, versions=1_000, hot_versions=200, pools=4, servers=100, audit_events=2_000, rounds=10),
    "tiny": Size(teams=2, models=4, versions=20, hot_versions=8, pools=2, servers=10, audit_events=40, rounds=2, deployer_teams=1),
}

# (label, URL template). {model} is the model with many versions.
PAGES = [
    ("ui /", "/"),
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


def seed_base() -> Base:
    """Phase "empty": the deployer, its team, and one model (no versions) for the detail URLs."""
    from django.contrib.auth import get_user_model

    from controlplane.accounts.models import Membership, Role, Team
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
    return Base(user=user, team=team, model=model)


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
        rest = size.versions - size.hot_versions
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

    with connection.cursor() as cursor:  # fresh planner statistics, as autovacuum would give
        cursor.execute("ANALYZE")
    return {
        "teams": Team.objects.count(), "models": Model.objects.count(), "versions": ModelVersion.objects.count(),
        "hot model versions": base.model.versions.count(), "pools": Pool.objects.count(),
        "servers": Server.objects.count(), "audit events": AuditEvent.objects.count(),
    }


# --------------------------------------------------------------------------------------------
# Measuring


def _get(client, path: str):
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}, not 200")
    return response


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
    for page in pages:
        page.times_ms[phase] = []
    for _ in range(rounds):
        for page in pages:
            start = time.perf_counter()
            _get(client, page.path)
            page.times_ms[phase].append((time.perf_counter() - start) * 1000)


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
    pages = [PageResult(label, template.format(model=base.model.pk)) for label, template in PAGES]

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


def _final(pages: list[PageResult]) -> dict[str, str]:
    worst = max(pages, key=lambda p: p.p95("seeded"))
    ratio = max(pages, key=lambda p: p.median("seeded") / p.median("empty"))
    growth = sum(max(p.growth, 0) for p in pages)
    return {
        "api_ui_p95_ms_worst": f"{worst.p95('seeded'):.1f} (goal: <= {GOAL_P95_MS:.0f} ms; page {worst.label})",
        "api_ui_median_ms_worst": f"{max(p.median('seeded') for p in pages):.1f} (goal: none, for reference)",
        "api_ui_median_seeded_over_empty_worst": f"{ratio.median('seeded') / ratio.median('empty'):.2f}x (goal: none, reference is the empty database; page {ratio.label})",
        "pages_over_goal": f"{sum(p.p95('seeded') > GOAL_P95_MS for p in pages)} (goal: 0)",
        "query_count_growth": f"{growth} (goal: 0)",
        "metrics_30_days": "skipped (goal: seeded once metrics exist; there are no metrics yet)",
    }


def _report(out, size, rounds, vendor, counts, pages, final, seconds) -> None:
    w = max(len(p.label) for p in pages)
    print(f"API and UI latency, size {size}, {rounds} timed requests per page and phase, in process "
          f"(django.test.Client, session of a deployer), database {vendor}, {os.cpu_count()} cores", file=out)
    print("seeded: " + ", ".join(f"{v} {k}" for k, v in counts.items()), file=out)
    print(f"{'page':<{w}}  {'empty med':>9} {'p95':>7}  {'seeded med':>10} {'p95':>7} {'min-max':>13}  {'x empty':>7}  queries e/1/s", file=out)
    for p in pages:
        s = p.times_ms["seeded"]
        spread = f"{min(s):.1f}-{max(s):.1f}"
        q = p.queries
        flag = "" if p.growth == 0 else f"  GROWS by {p.growth}"
        print(f"{p.label:<{w}}  {p.median('empty'):9.1f} {p.p95('empty'):7.1f}  {p.median('seeded'):10.1f} {p.p95('seeded'):7.1f} "
              f"{spread:>13}  {p.median('seeded') / p.median('empty'):6.2f}x  {q['empty']}/{q['1 row']}/{q['seeded']}{flag}", file=out)
    print("times in ms; x empty = seeded median / empty median; queries e/1/s = empty / one row each / seeded (an empty page skips its row query)", file=out)
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
