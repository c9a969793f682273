"""The metrics pipeline: service discovery, a 7-day chart, and Prometheus keeping up with a fleet.

Targets (ARCHITECTURE.md, "Performance targets"; BENCHMARKS.md, "Metrics pipeline"): the
discovery endpoint answers for 1,000 servers in 50 ms or less with a query count that does not
grow with the fleet; a 7-day chart query takes 150 ms or less end to end; Prometheus keeps up with
1,000 servers scraped every 10 s on one machine (report its CPU and memory). Each part has its
reference in the same run.

1. **Discovery**: ``GET /api/v1/metrics/targets/`` in process (``django.test.Client``) with a
   platform admin's read token, at the reference fleet (10 servers) and at the full one (1,000),
   both with 10 gateway replicas of 2 workers each that reported just now. Query counts under
   ``CaptureQueriesContext``, then timed rounds.
2. **Pipeline**: a fake Triton fleet (``benchmarks/fake_triton_fleet.py``, one asyncio process,
   one port per simulated server) serves Triton-like ``/metrics`` pages. The servers are
   ``fleet.Server`` rows in the benchmark's database; gunicorn serves the real http_sd endpoint
   on a free port; Prometheus runs with the configuration of ``controlplane/metrics/config.py``
   (Triton scraped every 10 s, the shipped rules). After every target is up, a window of
   ``window_s`` seconds: Prometheus's own ``/metrics`` is read every 2 s (rule group durations,
   missed iterations, samples appended, RSS), its CPU from ``/proc/<pid>/stat`` (utime+stime
   over the window), then ``scrape_duration_seconds`` of every scrape in the window. The same at
   the reference fleet size, with a fresh Prometheus.
3. **Chart**: 7 days of the recorded series the endpoint page charts
   (``switchyard:gateway_requests:rate1m``, ``..._errors``, ``..._error_ratio``, latency
   quantiles) for a few dozen endpoints with 2-3 variants, one sample every ``sample_s``,
   written as OpenMetrics and turned into blocks by ``promtool tsdb create-blocks-from
   openmetrics``. That promtool (2.42) has no block-duration flag and re-reads its whole input
   for every 2-hour block, so the series are written as one file per 2-hour window, run two at
   a time. Prometheus starts on those blocks (retention 30 d) early in the run and compacts them
   while the other parts run. Endpoint rows with the same names make the chart API's team
   scoping find them. Timed: ``GET /api/v1/metrics/series/?series=...&scope=endpoint:<id>&range=``
   7d and 1h (the reference), end to end through Django as a team member, and the raw range
   query through ``PrometheusClient`` (the reference without Django).

``main()`` creates and drops its own database (``api_latency.run_in_own_database``); ``run()``
uses the current one, whose rows must be committed (gunicorn reads them from another process).
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from benchmarks.api_latency import percentile, run_in_own_database

GOAL_DISCOVERY_P95_MS = 50.0
GOAL_CHART_MS = 150.0
REPO = Path(__file__).resolve().parent.parent
BLOCK_S = 2 * 3600  # promtool's block duration
CHART_SERIES = ("requests", "error_ratio", "latency_p99")
TRITON_JOB = "switchyard_triton"


@dataclass(frozen=True)
class Size:
    servers: int  # the fleet
    reference_servers: int  # the same-run reference
    gateways: int  # gateway replicas (2 workers each) in the discovery answer
    discovery_rounds: int
    scrape_s: float  # Triton scrape (and rule) interval
    window_s: int  # measured window at each fleet size, after every target is up
    chart_endpoints: int  # every third one has a third variant
    chart_days: int
    sample_s: int  # one recorded sample every sample_s seconds
    dense_endpoints: int  # more endpoints, with a sample every second (the shipped gateway rule interval)
    chart_rounds: int
    wait_compaction: bool  # measure charts after Prometheus compacted the backfilled blocks


SIZES = {
    "full": Size(servers=1000, reference_servers=10, gateways=10, discovery_rounds=100, scrape_s=10, window_s=90,
                 chart_endpoints=24, chart_days=7, sample_s=15, dense_endpoints=1, chart_rounds=20, wait_compaction=True),
    "small": Size(servers=100, reference_servers=10, gateways=10, discovery_rounds=30, scrape_s=10, window_s=30,
                  chart_endpoints=6, chart_days=7, sample_s=60, dense_endpoints=0, chart_rounds=5, wait_compaction=False),
    "tiny": Size(servers=10, reference_servers=2, gateways=2, discovery_rounds=3, scrape_s=2, window_s=8,
                 chart_endpoints=2, chart_days=1, sample_s=60, dense_endpoints=1, chart_rounds=2, wait_compaction=False),
}


@dataclass
class Discovery:
    servers: int
    queries: int
    targets: int
    times_ms: list[float]

    @property
    def p95(self) -> float:
        return percentile(self.times_ms, 95)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)


@dataclass
class Pipeline:
    servers: int
    window_s: float
    targets_up_min: int = 0
    targets_total: int = 0
    scrapes: int = 0
    scrape_p50_s: float = 0.0
    scrape_p99_s: float = 0.0
    scrape_max_s: float = 0.0
    rule_eval_s: list[float] = field(default_factory=list)  # the Triton group's last duration, each poll
    rule_eval_gateway_s: list[float] = field(default_factory=list)
    missed: float = 0.0  # iterations missed in the window, both groups
    missed_since_start: float = 0.0
    rule_failures: float = 0.0
    samples_per_s: float = 0.0
    head_series: float = 0.0
    recorded_series: int = 0
    interval_p99_s: float | None = None
    cores: float = 0.0
    rss_mb: float = 0.0
    fleet_cores: float = 0.0
    scrape_interval_share: float = 0.0  # a quarter of the interval: "well under" it

    @property
    def keeps_up(self) -> bool:
        return (self.targets_up_min == self.targets_total == self.servers and self.missed == 0
                and self.scrape_p99_s < self.scrape_interval_share and (not self.rule_eval_s or max(self.rule_eval_s) < self.scrape_interval_share))


@dataclass
class ChartTiming:
    range_key: str
    series: str
    dense: bool = False  # on the endpoint with a sample every second
    frozen: bool = False  # timed after gc.freeze(): full collections no longer walk the startup objects
    api_ms: list[float] = field(default_factory=list)
    raw_ms: list[float] = field(default_factory=list)
    points: int = 0
    lines: int = 0


@dataclass
class Result:
    size: str
    discovery: list[Discovery]
    pipelines: list[Pipeline]
    charts: list[ChartTiming]
    chart_info: dict
    final: dict[str, str]
    seconds: dict[str, float]


# --------------------------------------------------------------------------------------------
# Small helpers


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process and its reaped children, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def scrape_text(url: str, timeout: float = 5.0) -> dict[str, float]:
    """A /metrics page as {"name{labels}": value}."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def _pick(page: dict[str, float], name: str, must: str = "") -> list[float]:
    return [v for k, v in page.items() if (k == name or k.startswith(name + "{")) and must in k]


def prom_api(url: str, path: str, params: dict, timeout: float = 30.0):
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=timeout) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus answered {body}")
    return body["data"]


def prom_scalar(url: str, expr: str) -> float:
    result = prom_api(url, "query", {"query": expr})["result"]
    return float(result[0]["value"][1]) if result else 0.0


def database_url() -> str:
    """The current database as a DATABASE_URL for a subprocess (gunicorn)."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(s["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError("an in-memory SQLite database cannot be shared with a web server process: use PostgreSQL")
        return f"sqlite:///{name}"
    if connection.vendor != "postgresql":
        raise RuntimeError(f"{connection.vendor} is not supported here")
    auth = urllib.parse.quote(s.get("USER") or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + urllib.parse.quote(s["PASSWORD"], safe="")
    host = s.get("HOST") or "localhost"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{urllib.parse.quote(s['NAME'], safe='')}"


# --------------------------------------------------------------------------------------------
# Seeding


@dataclass
class Seed:
    admin: object
    token: str
    pool: object


def seed_admin_and_pool(gateways: int) -> Seed:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from controlplane.accounts import tokens
    from controlplane.accounts.models import ApiToken
    from controlplane.endpoints.models import GatewayReplica
    from controlplane.fleet.models import Pool

    admin = get_user_model().objects.create_user(username="bench-prometheus", password=None, is_staff=True)
    secret, prefix, secret_hash = tokens.generate()
    ApiToken.objects.create(user=admin, created_by=admin, name="prometheus", prefix=prefix, secret_hash=secret_hash,
                            scopes=["read"], expires_at=timezone.now() + timedelta(days=1))
    pool = Pool.objects.create(name="fake-triton", description="Simulated Triton servers (benchmarks/fake_triton_fleet.py)")
    now = timezone.now()
    GatewayReplica.objects.bulk_create([
        GatewayReplica(replica_id=f"gw-{i:02d}/w{k}", address=f"http://10.9.0.{i + 1}:8080", last_seen_at=now,
                       started_at=now, table_version=1)
        for i in range(gateways) for k in range(2)
    ])
    return Seed(admin=admin, token=secret, pool=pool)


def gateways_seen(recently: bool) -> None:
    """Gateway replicas reported just now (listed by discovery) or an hour ago (left out: the
    pipeline has no gateway to scrape)."""
    from django.utils import timezone

    from controlplane.endpoints.models import GatewayReplica

    GatewayReplica.objects.update(last_seen_at=timezone.now() - (timedelta(0) if recently else timedelta(hours=1)))


def grow_fleet(pool, ports: list[int], count: int) -> None:
    """Servers fake-triton-0000.. up to `count`, each pointing at its port of the fake fleet."""
    from controlplane.fleet.models import Server

    start = Server.objects.count()
    Server.objects.bulk_create([
        Server(name=f"fake-triton-{i:04d}", pool=pool, http_url=f"http://127.0.0.1:{ports[i]}",
               metrics_url=f"http://127.0.0.1:{ports[i]}/metrics", gpu_type=["A100", "H100", "L4"][i % 3],
               gpu_count=1, labels={"zone": f"eu-{i % 3 + 1}a", "rack": f"r{i % 17}"}, status="up",
               is_live=True, is_ready=True)
        for i in range(start, count)
    ], batch_size=1000)


# --------------------------------------------------------------------------------------------
# 1. Discovery


def measure_discovery(token: str, servers: int, rounds: int) -> Discovery:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = "/api/v1/metrics/targets/"

    def get():
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        return response

    get()  # warm-up
    with CaptureQueriesContext(connection) as ctx:
        body = json.loads(get().content)
    queries = len(ctx.captured_queries)  # now: the next request clears the connection's query log
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        get()
        times.append((time.perf_counter() - t0) * 1000)
    return Discovery(servers=servers, queries=queries, targets=len(body), times_ms=times)


# --------------------------------------------------------------------------------------------
# 2. Pipeline


class Processes:
    """Every process this benchmark starts, stopped by its own process group at the end."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def spawn(self, cmd: list[str], name: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
        from controlplane.devstack import spawn

        proc = spawn(cmd, log_path=self.workdir / f"{name}.log", env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        from controlplane.devstack import stop_process_group

        stop_process_group(proc, grace=5.0)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)

    def log(self, name: str) -> str:
        from controlplane.devstack import log_tail

        return log_tail(self.workdir / f"{name}.log")


def start_fake_fleet(procs: Processes, count: int) -> tuple[subprocess.Popen, list[int]]:
    from controlplane.devstack import LOOPBACK, free_ports

    # Free ports now, listened on a moment later by the fleet: a clash would fail its start loudly.
    ports = free_ports(count)
    proc = procs.spawn([sys.executable, "-m", "benchmarks.fake_triton_fleet", "--host", LOOPBACK,
                        "--ports", ",".join(map(str, ports))], "fake_triton_fleet", cwd=REPO)
    deadline = time.monotonic() + 60
    log = procs.workdir / "fake_triton_fleet.log"
    while time.monotonic() < deadline:
        if '"ports"' in log.read_text(errors="replace"):
            return proc, ports
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the fake Triton fleet did not start:\n{procs.log('fake_triton_fleet')}")


def start_web(procs: Processes, token: str) -> str:
    """gunicorn serving Switchyard (the real discovery view) on a free port, on this database."""
    from controlplane.devstack import LOOPBACK, free_ports, has_exited

    port = free_ports(1)[0]
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "controlplane.settings"}
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or shutil.which("gunicorn")
    cmd = [gunicorn] if gunicorn else [sys.executable, "-m", "gunicorn"]
    proc = procs.spawn([*cmd, "controlplane.wsgi:application", "--bind", f"{LOOPBACK}:{port}", "--workers", "1",
                        "--threads", "2"], "gunicorn", env=env, cwd=REPO)
    url = f"http://{LOOPBACK}:{port}"
    request = urllib.request.Request(f"{url}/api/v1/metrics/targets/", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return url
        except OSError:
            pass
        if has_exited(proc):
            break
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer discovery:\n{procs.log('gunicorn')}")


def start_prometheus(procs: Processes, name: str, config_dir: Path, *, retention: str = "1d",
                     extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    from controlplane.devstack import LOOPBACK, free_ports, has_exited
    from controlplane.devstack.prometheus import find_binary

    port = free_ports(1)[0]
    proc = procs.spawn([find_binary("prometheus"), f"--config.file={config_dir / 'prometheus.yml'}",
                        f"--web.listen-address={LOOPBACK}:{port}", f"--storage.tsdb.path={config_dir / 'data'}",
                        f"--storage.tsdb.retention.time={retention}", *extra], name, cwd=config_dir)
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        if has_exited(proc):
            break
        time.sleep(0.1)
    raise RuntimeError(f"Prometheus ({name}) was not ready:\n{procs.log(name)}")


def measure_pipeline(procs: Processes, web_url: str, token: str, servers: int, size: Size, fleet_pid: int,
                     out) -> Pipeline:
    from controlplane.metrics.config import render_files, write_files

    config_dir = procs.workdir / f"prometheus-{servers}"
    write_files(config_dir, render_files(switchyard_url=web_url, triton_scrape_s=size.scrape_s), token=token)
    proc, url = start_prometheus(procs, f"prometheus-{servers}", config_dir)
    result = Pipeline(servers=servers, window_s=size.window_s, scrape_interval_share=size.scrape_s / 4)
    try:
        up = f'count(up{{job="{TRITON_JOB}"}} == 1)'
        deadline = time.monotonic() + 3 * size.scrape_s + 60
        t_start = time.monotonic()
        while prom_scalar(url, up) < servers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {prom_scalar(url, up):.0f} of {servers} targets up after "
                                   f"{time.monotonic() - t_start:.0f} s:\n{procs.log(f'prometheus-{servers}')}")
            time.sleep(0.5)
        print(f"  N={servers}: every target up {time.monotonic() - t_start:.1f} s after Prometheus started; "
              f"measuring {size.window_s} s", file=out, flush=True)
        time.sleep(min(size.scrape_s, 5))  # the rules have run at least once on every target
        metrics_url = f"{url}/metrics"
        first = scrape_text(metrics_url)
        cpu0, fleet0, t0 = _proc_cpu_s(proc.pid), _proc_cpu_s(fleet_pid), time.monotonic()
        wall0 = time.time()
        up_counts, rss = [], []
        last = first
        while time.monotonic() - t0 < size.window_s:
            time.sleep(min(2.0, max(0.0, size.window_s - (time.monotonic() - t0))))
            last = scrape_text(metrics_url)
            result.rule_eval_s += _pick(last, "prometheus_rule_group_last_duration_seconds", TRITON_JOB)
            result.rule_eval_gateway_s += _pick(last, "prometheus_rule_group_last_duration_seconds", "switchyard_gateway")
            up_counts.append(prom_scalar(url, up))
            rss.append(_rss_mb(proc.pid))
        elapsed = time.monotonic() - t0
        result.cores = (_proc_cpu_s(proc.pid) - cpu0) / elapsed
        result.fleet_cores = (_proc_cpu_s(fleet_pid) - fleet0) / elapsed
        result.rss_mb = max(rss)
        result.targets_up_min = int(min(up_counts))
        result.targets_total = int(prom_scalar(url, f'count(up{{job="{TRITON_JOB}"}})'))

        def delta(name: str) -> float:
            return sum(_pick(last, name)) - sum(_pick(first, name))

        result.missed = delta("prometheus_rule_group_iterations_missed_total")
        result.missed_since_start = sum(_pick(last, "prometheus_rule_group_iterations_missed_total"))
        result.rule_failures = delta("prometheus_rule_evaluation_failures_total")
        result.samples_per_s = delta("prometheus_tsdb_head_samples_appended_total") / elapsed
        result.head_series = sum(_pick(last, "prometheus_tsdb_head_series"))
        interval = _pick(last, "prometheus_target_interval_length_seconds", 'quantile="0.99"')
        result.interval_p99_s = max(interval) if interval else None
        # Every scrape's duration in the window (a range vector: raw samples, not a rate).
        window = max(1, int(time.time() - wall0))
        data = prom_api(url, "query", {"query": f'scrape_duration_seconds{{job="{TRITON_JOB}"}}[{window}s]'})
        durations = [float(v) for series in data["result"] for _, v in series["values"]]
        result.scrapes = len(durations)
        if durations:
            result.scrape_p50_s = percentile(durations, 50)
            result.scrape_p99_s = percentile(durations, 99)
            result.scrape_max_s = max(durations)
        result.recorded_series = int(prom_scalar(url, "count(switchyard:triton_requests:rate1m)"))
    finally:
        procs.stop(proc)
    return result


# --------------------------------------------------------------------------------------------
# 3. Chart: backfill, Prometheus on the blocks, endpoint rows


@dataclass
class ChartSeed:
    endpoints: list[tuple[str, list[str], int]]  # (public name, variants, seconds between samples)
    start: int
    end: int
    samples: int
    lines: int
    files: int
    blocks: int
    seconds: dict[str, float]


def chart_endpoints(size: Size) -> list[tuple[str, list[str], int]]:
    """(public name, variants, seconds between samples)."""
    out = []
    for i in range(size.chart_endpoints):
        variants = ["blue", "green"] + (["shadow"] if i % 3 == 2 else [])
        out.append((f"bench-t{i % 3}.ep-{i:02d}", variants, size.sample_s))
    for i in range(size.dense_endpoints):
        out.append((f"bench-t0.dense-{i:02d}", ["blue", "green"], 1))
    return out


def _families(endpoint: str, variants: list[str]):
    """(family, label text, value function of (t, diurnal factor)) for one endpoint's recorded series."""
    from controlplane.metrics import series as S

    h = sum(map(ord, endpoint)) % 17
    for k, variant in enumerate(variants):
        version = str(3 + k)
        base = (40.0 + h * 3) * (0.9 if k == 0 else 0.1)
        lab = f'endpoint="{endpoint}",variant="{variant}",version="{version}"'
        err = 0.002 + 0.001 * k
        yield S.GATEWAY_REQUESTS.name, lab, lambda f, base=base: base * f
        yield S.GATEWAY_ERRORS.name, lab, lambda f, base=base, err=err: base * f * err
        yield S.GATEWAY_ERROR_RATIO.name, lab, lambda f, err=err: err * (2 - f)
        lat = f'endpoint="{endpoint}",variant="{variant}"'
        for series, q in ((S.GATEWAY_LATENCY_P50, 0.012), (S.GATEWAY_LATENCY_P95, 0.035), (S.GATEWAY_LATENCY_P99, 0.06)):
            yield series.name, lat, lambda f, q=q, k=k: q * (1 + 0.2 * k) * (0.7 + 0.6 * f)


def write_openmetrics(directory: Path, endpoints: list[tuple[str, list[str], int]], start: int, end: int) -> tuple[list[Path], int]:
    """One OpenMetrics file per 2-hour block window: families grouped, `# TYPE ... gauge`,
    timestamps in seconds, `# EOF` last. Returns the files and the number of samples."""
    by_family: dict[str, list] = {}
    for endpoint, variants, step in endpoints:
        for family, labels, value in _families(endpoint, variants):
            by_family.setdefault(family, []).append((labels, value, step))
    files, samples = [], 0
    first_window = start - start % BLOCK_S
    for window in range(first_window, end + 1, BLOCK_S):
        lo, hi = max(start, window), min(end, window + BLOCK_S - 1)
        grids = {}  # step -> (factors, stamps): the times on that step's grid in this window
        for step in {step for members in by_family.values() for *_, step in members}:
            times = list(range(lo + (-(lo - start)) % step, hi + 1, step))
            grids[step] = ([1.0 + 0.5 * math.sin(2 * math.pi * (t % 86400) / 86400) for t in times],
                           [f" {t}\n" for t in times])
        path = directory / f"window-{window}.om"
        with open(path, "w") as f:
            for family, members in by_family.items():
                f.write(f"# TYPE {family} gauge\n")
                for labels, value, step in members:
                    factors, stamps = grids[step]
                    prefix = f"{family}{{{labels}}} "
                    f.write("".join([f"{prefix}{value(x):.6g}{s}" for x, s in zip(factors, stamps)]))
                    samples += len(stamps)
            f.write("# EOF\n")
        files.append(path)
    return files, samples


def backfill(procs: Processes, size: Size, out) -> tuple[ChartSeed, Path]:
    from controlplane.devstack.prometheus import find_binary

    promtool = find_binary("promtool")
    seconds = {}
    config_dir = procs.workdir / "prometheus-chart"
    data = config_dir / "data"
    om_dir = procs.workdir / "openmetrics"
    om_dir.mkdir(parents=True)
    data.mkdir(parents=True)
    (config_dir / "prometheus.yml").write_text("# Charts only: the backfilled blocks, nothing scraped.\nglobal: {}\n")
    endpoints = chart_endpoints(size)
    end = int(time.time()) // size.sample_s * size.sample_s
    start = end - size.chart_days * 86400 - 3600  # a little more than the range, so its first point has data
    t0 = time.perf_counter()
    files, samples = write_openmetrics(om_dir, endpoints, start, end)
    seconds["write openmetrics"] = time.perf_counter() - t0
    t0 = time.perf_counter()

    def create(path: Path) -> None:
        done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(path), str(data)],
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"promtool refused {path.name}: {done.stderr[-2000:]}")
        path.unlink()

    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        list(pool.map(create, files))
    seconds["promtool blocks"] = time.perf_counter() - t0
    shutil.rmtree(om_dir, ignore_errors=True)
    blocks = sum(1 for p in data.iterdir() if p.is_dir() and len(p.name) == 26)
    lines = sum(len(v) * 6 for _, v, _ in endpoints)  # six series per variant (see _families)
    dense = sum(len(v) * 6 for _, v, step in endpoints if step == 1)
    print(f"  backfill: {lines} series, {samples:,} samples (one every {size.sample_s} s, {dense} of the series one "
          f"every 1 s) over {size.chart_days} d + 1 h, in {len(files)} files: written in "
          f"{seconds['write openmetrics']:.1f} s, {blocks} blocks by promtool in {seconds['promtool blocks']:.1f} s",
          file=out, flush=True)
    return ChartSeed(endpoints=endpoints, start=start, end=end, samples=samples, lines=lines, files=len(files),
                     blocks=blocks, seconds=seconds), config_dir


def seed_chart_rows(seed: ChartSeed):
    """A viewer in the three teams, a model per team and the endpoints, named as the series are."""
    from django.contrib.auth import get_user_model

    from controlplane.accounts.models import Membership, Role, Team
    from controlplane.endpoints.models import Endpoint
    from controlplane.registry.models import Model

    user = get_user_model().objects.create_user(username="bench-viewer", password=None)
    teams, models, ids = {}, {}, {}
    for public, _, _ in seed.endpoints:
        slug, name = public.split(".", 1)
        if slug not in teams:
            teams[slug] = Team.objects.create(slug=slug, display_name=slug)
            Membership.objects.create(user=user, team=teams[slug], role=Role.VIEWER)
            models[slug] = Model.objects.create(team=teams[slug], name="fraud-scorer", backend="onnxruntime",
                                                max_batch_size=8, inputs=[], outputs=[], created_by=user)
        ids[public] = Endpoint.objects.create(team=teams[slug], name=name, model=models[slug], kind="pinned",
                                              access="open", created_by=user).pk
    return user, ids


def wait_for_compaction(url: str, blocks: int, timeout: float, out) -> int:
    """Prometheus compacts the 2-hour blocks into larger ones about a minute after it starts,
    as it would have done while recording. Wait (up to `timeout`, at least 20 s) until the block
    count has fallen and then stayed put for 10 s."""
    deadline = time.monotonic() + max(timeout, 20.0)
    loaded, stable_since = float(blocks), time.monotonic()
    while True:
        now = sum(_pick(scrape_text(f"{url}/metrics"), "prometheus_tsdb_blocks_loaded"))
        if now != loaded:
            loaded, stable_since = now, time.monotonic()
        if (loaded < blocks and time.monotonic() - stable_since >= 10) or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(f"  chart Prometheus: {blocks} backfilled blocks, {int(loaded)} loaded when the charts were timed",
          file=out, flush=True)
    return int(loaded)


@contextlib.contextmanager
def gc_pauses():
    """The durations (ms) of Python's full (generation 2) garbage collections in the block."""
    pauses: list[float] = []
    started = [0.0]

    def callback(phase, info):
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(callback)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(callback)


def measure_charts(url: str, seed: ChartSeed, rounds: int, rows, *, frozen: bool = False) -> list[ChartTiming]:
    from django.test import Client, override_settings

    from controlplane.metrics import charts, queries
    from controlplane.metrics.client import PrometheusClient, aligned_range, choose_step

    user, ids = rows
    client = Client()
    client.force_login(user)
    raw = PrometheusClient(url, timeout=10)
    timings = [ChartTiming(r, s, frozen=frozen) for r in ("1h", "7d") for s in CHART_SERIES]
    dense = [public for public, _, step in seed.endpoints if step == 1]
    if dense:
        timings += [ChartTiming(r, s, dense=True, frozen=frozen) for r in ("1h", "7d") for s in CHART_SERIES]
    names = [public for public, _, step in seed.endpoints if step != 1]
    with override_settings(SWITCHYARD_PROMETHEUS_URL=url, SWITCHYARD_PROMETHEUS_TIMEOUT_SECONDS=10):
        for i in range(rounds + 1):  # the first round warms up
            for timing in timings:
                public = (dense if timing.dense else names)[i % len(dense if timing.dense else names)]
                path = f"/api/v1/metrics/series/?series={timing.series}&scope=endpoint:{ids[public]}&range={timing.range_key}"
                t0 = time.perf_counter()
                response = client.get(path)
                api_ms = (time.perf_counter() - t0) * 1000
                body = response.json() if response.status_code == 200 else {}
                if body.get("status") != "ok":
                    raise RuntimeError(f"GET {path}: {response.status_code} {body.get('status')} {body.get('message')}")
                seconds = charts.RANGES[timing.range_key]
                step = choose_step(seconds)
                start, end = aligned_range(seconds, step)
                expr = queries.chart_query(timing.series, queries.Scope("endpoint", public)).expr
                t0 = time.perf_counter()
                raw.query_range(expr, start=start, end=end, step=step)
                raw_ms = (time.perf_counter() - t0) * 1000
                if i == 0:
                    continue
                timing.api_ms.append(api_ms)
                timing.raw_ms.append(raw_ms)
                timing.lines = len(body["lines"])
                timing.points = sum(1 for line in body["lines"] for _, v in line["points"] if v is not None)
    return timings


# --------------------------------------------------------------------------------------------
# The run


def run(size: str = "full", rounds: int | None = None, out=None) -> Result:
    out = out or sys.stdout
    spec = SIZES[size]
    seconds: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-metrics-bench-"))
    procs = Processes(workdir)
    try:
        t0 = time.perf_counter()
        fleet, ports = start_fake_fleet(procs, spec.servers)
        seconds["fake fleet start"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        chart_seed, chart_dir = backfill(procs, spec, out)
        # Compaction flags as Prometheus's defaults for a 30-day retention; it starts now so that
        # it has compacted the blocks by the time the charts are timed.
        chart_proc, chart_url = start_prometheus(procs, "prometheus-chart", chart_dir, retention="30d")
        chart_started = time.monotonic()
        seconds["backfill"] = time.perf_counter() - t0

        seed = seed_admin_and_pool(spec.gateways)
        web_url = start_web(procs, seed.token)
        discovery, pipelines = [], []
        for n in (spec.reference_servers, spec.servers):
            grow_fleet(seed.pool, ports, n)
            gateways_seen(True)
            t0 = time.perf_counter()
            discovery.append(measure_discovery(seed.token, n, rounds or spec.discovery_rounds))
            seconds[f"discovery {n}"] = time.perf_counter() - t0
            gateways_seen(False)
            t0 = time.perf_counter()
            pipelines.append(measure_pipeline(procs, web_url, seed.token, n, spec, fleet.pid, out))
            seconds[f"pipeline {n}"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        blocks_now = chart_seed.blocks
        if spec.wait_compaction:
            blocks_now = wait_for_compaction(chart_url, chart_seed.blocks, max(0.0, 150 - (time.monotonic() - chart_started)), out)
        chart_info = {"blocks backfilled": chart_seed.blocks, "blocks queried": blocks_now, "series": chart_seed.lines,
                      "samples": chart_seed.samples, "sample_s": spec.sample_s, "days": spec.chart_days,
                      "endpoints": len(chart_seed.endpoints), "chart prometheus rss mb": round(_rss_mb(chart_proc.pid)),
                      **{f"{k} s": round(v, 1) for k, v in chart_seed.seconds.items()}}
        rows = seed_chart_rows(chart_seed)
        with gc_pauses() as pauses:  # the in-process side of the chart API's tail
            charts = measure_charts(chart_url, chart_seed, rounds or spec.chart_rounds, rows)
        chart_info["python gc gen2 pauses during the charts"] = len(pauses)
        chart_info["their max ms"] = round(max(pauses, default=0.0), 1)
        # The same again with the objects alive now frozen (what a web worker would get from
        # gc.freeze() after loading the app): does the tail go with the full collections?
        gc.collect()
        gc.freeze()
        try:
            with gc_pauses() as pauses:
                charts += measure_charts(chart_url, chart_seed, rounds or spec.chart_rounds, rows, frozen=True)
        finally:
            gc.unfreeze()
        chart_info["after gc.freeze(): gen2 pauses"] = len(pauses)
        chart_info["their max ms (frozen)"] = round(max(pauses, default=0.0), 1)
        seconds["charts"] = time.perf_counter() - t0
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    final = _final(spec, discovery, pipelines, charts)
    _report(out, size, spec, discovery, pipelines, charts, chart_info, final, seconds)
    return Result(size=size, discovery=discovery, pipelines=pipelines, charts=charts, chart_info=chart_info,
                  final=final, seconds=seconds)


def _final(spec: Size, discovery: list[Discovery], pipelines: list[Pipeline], charts: list[ChartTiming]) -> dict[str, str]:
    ref, big = discovery
    pref, pbig = pipelines
    frozen7 = [c for c in charts if c.range_key == "7d" and not c.dense and c.frozen]
    charts = [c for c in charts if not c.frozen]
    c7 = [c for c in charts if c.range_key == "7d" and not c.dense]
    c1 = [c for c in charts if c.range_key == "1h" and not c.dense]
    d7 = [c for c in charts if c.range_key == "7d" and c.dense]
    worst7 = max(c7, key=lambda c: percentile(c.api_ms, 95))
    worst1 = max(c1, key=lambda c: percentile(c.api_ms, 95))
    med7 = statistics.median(v for c in c7 for v in c.api_ms)
    med1 = statistics.median(v for c in c1 for v in c.api_ms)
    raw7 = [v for c in c7 for v in c.raw_ms]
    interval = f"{spec.scrape_s:g} s"
    dense = {}
    if d7:
        worst = max(d7, key=lambda c: percentile(c.api_ms, 95))
        dense = {
            "chart_7d_p95_ms_1s_samples": f"{percentile(worst.api_ms, 95):.1f} (goal: <= {GOAL_CHART_MS:.0f} ms; an endpoint with a sample every 1 s, the shipped gateway rule interval; worst series {worst.series})",
            "chart_7d_p50_ms_1s_samples": f"{statistics.median(v for c in d7 for v in c.api_ms):.1f} (goal: none; the same, all three series)",
            "chart_7d_raw_p95_ms_1s_samples": f"{percentile([v for c in d7 for v in c.raw_ms], 95):.1f} (goal: none; the range query alone)",
        }
    return {
        f"discovery_p95_ms_{big.servers}": f"{big.p95:.1f} (goal: <= {GOAL_DISCOVERY_P95_MS:.0f} ms; {big.servers} servers, {spec.gateways} gateway replicas)",
        f"discovery_p95_ms_{ref.servers}": f"{ref.p95:.1f} (goal: none, the reference)",
        "discovery_p95_ratio": f"{big.p95 / ref.p95:.2f}x (goal: none; {big.servers} over {ref.servers} servers)",
        "discovery_query_growth": f"{big.queries - ref.queries} (goal: 0; {ref.queries} queries at {ref.servers}, {big.queries} at {big.servers})",
        "chart_7d_p95_ms": f"{percentile(worst7.api_ms, 95):.1f} (goal: <= {GOAL_CHART_MS:.0f} ms; end to end through Django, worst series {worst7.series})",
        "chart_7d_p50_ms": f"{med7:.1f} (goal: none; all three series)",
        "chart_7d_raw_p95_ms": f"{percentile(raw7, 95):.1f} (goal: none; the range query alone, for reference)",
        "chart_1h_p95_ms": f"{percentile(worst1.api_ms, 95):.1f} (goal: none, the reference; worst series {worst1.series})",
        "chart_7d_over_1h": f"{med7 / med1:.2f}x (goal: none; medians)",
        **dense,
        "chart_7d_p95_ms_gc_frozen": f"{percentile(max(frozen7, key=lambda c: percentile(c.api_ms, 95)).api_ms, 95):.1f} (goal: none; the 7d charts again, the benchmark process frozen with gc.freeze)",
        "pipeline_targets_up": f"{pbig.targets_up_min}/{pbig.servers} (goal: all; lowest count in the window)",
        "pipeline_scrape_p99_s": f"{pbig.scrape_p99_s:.4f} (goal: well under {interval}; {pref.scrape_p99_s:.4f} at N={pref.servers})",
        "pipeline_rule_eval_max_s": f"{max(pbig.rule_eval_s, default=0):.4f} (goal: well under {interval}; {max(pref.rule_eval_s, default=0):.4f} at N={pref.servers})",
        "pipeline_missed_iterations": f"{pbig.missed:.0f} (goal: 0)",
        "pipeline_samples_per_s": f"{pbig.samples_per_s:.0f} (goal: none; {pref.samples_per_s:.0f} at N={pref.servers})",
        "pipeline_prometheus_cores": f"{pbig.cores:.3f} (goal: none, reported; {pref.cores:.3f} at N={pref.servers})",
        "pipeline_prometheus_rss_mb": f"{pbig.rss_mb:.0f} (goal: none, reported; {pref.rss_mb:.0f} at N={pref.servers})",
        "pipeline_keeps_up": f"{'yes' if pbig.keeps_up and pref.keeps_up else 'no'} (goal: yes; every target up, no missed rule iteration, scrape p99 and rule evaluation under a quarter of the interval)",
    }


def _report(out, size, spec, discovery, pipelines, charts, chart_info, final, seconds) -> None:
    print(f"Metrics pipeline, size {size}, {os.cpu_count()} cores", file=out)
    print("discovery (GET /api/v1/metrics/targets/, read token of a platform admin, in process):", file=out)
    print(f"  {'servers':>7} {'targets':>7} {'median':>7} {'p95':>7} {'min-max':>13} {'queries':>7}", file=out)
    for d in discovery:
        print(f"  {d.servers:>7} {d.targets:>7} {d.median:7.1f} {d.p95:7.1f} {f'{min(d.times_ms):.1f}-{max(d.times_ms):.1f}':>13} {d.queries:>7}", file=out)
    print(f"pipeline (fake Triton fleet, Triton scraped every {spec.scrape_s:g} s, shipped rules; window per size):", file=out)
    print(f"  {'servers':>7} {'up(min)':>7} {'scrapes':>7} {'scrape p50':>10} {'p99':>7} {'max':>7} {'rule eval med':>13} {'max':>7} "
          f"{'missed':>6} {'samples/s':>9} {'series':>7} {'recorded':>8} {'interval p99':>12} {'cores':>6} {'RSS MB':>6} {'fleet cores':>11}", file=out)
    for p in pipelines:
        ev = statistics.median(p.rule_eval_s) if p.rule_eval_s else 0.0
        ip = f"{p.interval_p99_s:.3f}" if p.interval_p99_s is not None else "-"
        print(f"  {p.servers:>7} {f'{p.targets_up_min}/{p.targets_total}':>7} {p.scrapes:>7} {p.scrape_p50_s:10.4f} {p.scrape_p99_s:7.4f} "
              f"{p.scrape_max_s:7.4f} {ev:13.4f} {max(p.rule_eval_s, default=0):7.4f} {p.missed:6.0f} {p.samples_per_s:9.0f} "
              f"{p.head_series:7.0f} {p.recorded_series:8} {ip:>12} {p.cores:6.3f} {p.rss_mb:6.0f} {p.fleet_cores:11.3f}", file=out)
    print("  times in s; recorded = switchyard:triton_requests:rate1m series; interval p99 = Prometheus's own "
          "prometheus_target_interval_length_seconds; fleet cores = the fake fleet's CPU", file=out)
    print("chart (GET /api/v1/metrics/series/?scope=endpoint:<id>, a team viewer's session; raw = PrometheusClient.query_range):", file=out)
    print("  " + ", ".join(f"{k} {v}" for k, v in chart_info.items()), file=out)
    print(f"  {'gc':>6} {'range':>5} {'samples':>7} {'series':<12} {'api p50':>7} {'p95':>7} {'min-max':>13} {'raw p50':>7} {'p95':>7} {'lines':>5} {'points':>6}", file=out)
    for c in charts:
        print(f"  {'frozen' if c.frozen else '':>6} {c.range_key:>5} {'1 s' if c.dense else f'{spec.sample_s} s':>7} {c.series:<12} {statistics.median(c.api_ms):7.1f} {percentile(c.api_ms, 95):7.1f} "
              f"{f'{min(c.api_ms):.1f}-{max(c.api_ms):.1f}':>13} {statistics.median(c.raw_ms):7.1f} {percentile(c.raw_ms, 95):7.1f} "
              f"{c.lines:>5} {c.points:>6}", file=out)
    print("phases took " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), file=out)
    for name, value in final.items():
        print(f"{name}: {value}", file=out)
    out.flush()


def main(size: str = "full", rounds: int | None = None) -> int:
    # Stopped with SIGTERM (or SIGINT from a shell that ignores it in background jobs), the run
    # still stops its processes and drops its database.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    return run_in_own_database(run, size=size, rounds=rounds)


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:2] or ["full"])))
