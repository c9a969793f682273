"""Gateway throughput, added latency, memory and switch time, against nginx and a direct call.

Targets (ARCHITECTURE.md, "Performance targets"; BENCHMARKS.md): the gateway reaches at least
0.7x the throughput of nginx proxying the same Triton on the same cores, adds at most 1 ms of p50
latency over a direct call (unloaded), keeps its memory flat over 1M requests, and moves 100% of
traffic to a new variant within 1 s of a table change, without failing a request.

How it measures, all in one run, on loopback:

* One real tritonserver (devstack, explicit model control, a local model repository) with the
  devstack test model (numpy, Python backend, no sleep): versions 1 and 2 of ``trivial``,
  loaded through the repository API with ``version_policy: specific [1, 2]``.
* Three targets for the same model: Triton's HTTP port (direct); nginx (Debian package,
  ``worker_processes`` = the gateway's workers, ``proxy_pass`` to a keepalive upstream); and
  the gateway (``--workers N --table-file``) with one open endpoint ``bench.trivial`` whose
  single variant is version 1. The URL path differs per target, the body is the same.
* ``wrk`` with ``benchmarks/wrk/infer.lua`` (a fixed JSON infer body; its ``done()`` prints one
  machine-readable summary line). Unloaded latency at 1 connection (``-t1 -c1``), then
  throughput at 32 and 128 connections (``-t2``). Targets in turn, for several rounds, the
  order rotating per round so that a drift of the machine's load does not favour one target.
* CPU: utime+stime of each process tree (``/proc/<pid>/stat``) before and after each wrk run,
  per request: the proxy's (nginx or the gateway, all workers), Triton's, wrk's own.
* Memory: the gateway's worker RSS (VmRSS summed over its workers) after a warm-up, then after
  the full request count, driven by wrk at 32 connections in chunks.
* Switch time: a second gateway takes its table from a stand-in control plane (a small local
  HTTP server in the contract of gateway/tablesource.py: the table with an ETag, 304 when
  unchanged, and the replicas' reports). A Python client keeps requests going (keep-alive
  connections, plus some with a new connection per request so that every worker gets traffic)
  and records each response's ``X-Switchyard-Variant`` and the model's VERSION output. The
  weights flip from 100/0 to 0/100 and back; each flip is timed until 100% of responses come
  from the new variant, and until every worker has reported the new table version. Twice: with
  the table polled (each second), and pushed through Redis (PUBLISH on the gateway's channel, on
  a private redis-server, so that no other gateway on the machine hears it; skipped if Redis is
  not installed).

No database and no Django. ``main()`` and ``run()`` start and stop every process they need
(by PID, each in its own process group) and remove their temporary directory.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gateway.table import FORMAT

GOAL_RATIO = 0.7  # gateway requests/s over nginx's
GOAL_ADDED_P50_MS = 1.0  # gateway p50 minus direct p50, at 1 connection
GOAL_RSS_GROWTH = 0.10  # growth of worker RSS from after the warm-up to the end
GOAL_SWITCH_S = 1.0

WORKERS = 2  # the gateway's --workers, and nginx's worker_processes
CONNECTIONS = (32, 128)
TARGETS = ("direct", "nginx", "gateway")
MODEL = "trivial"  # the Triton model name
ENDPOINT = "bench.trivial"  # the gateway's public name for it
TEAM = "bench"
VARIANT_HEADER = "X-Switchyard-Variant"
SWITCH_MECHANISMS = ("poll", "redis")
LUA = Path(__file__).with_name("wrk") / "infer.lua"
BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]},
    separators=(",", ":"),
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Size:
    rounds: int
    seconds: int  # each wrk run under load
    latency_seconds: int  # each wrk run at 1 connection
    memory_warmup: int  # requests before the first RSS sample
    memory_total: int  # requests at the last RSS sample
    memory_chunk_seconds: int
    switches: int  # weight flips timed (alternating direction)


SIZES = {
    "full": Size(rounds=3, seconds=10, latency_seconds=10, memory_warmup=50_000, memory_total=1_000_000,
                 memory_chunk_seconds=10, switches=6),
    "small": Size(rounds=2, seconds=5, latency_seconds=5, memory_warmup=20_000, memory_total=100_000,
                  memory_chunk_seconds=5, switches=4),
    "tiny": Size(rounds=1, seconds=2, latency_seconds=2, memory_warmup=5_000, memory_total=20_000,
                 memory_chunk_seconds=2, switches=2),
}


class BenchmarkSetupError(RuntimeError):
    """Something the benchmark needs is missing or did not start."""


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Sample:
    """One wrk run against one target."""
    target: str
    connections: int
    round: int
    requests: int
    seconds: float
    errors: int  # socket errors, timeouts and statuses > 399
    p50_ms: float
    p99_ms: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # "proxy", "triton", "wrk" -> CPU seconds; "<who>_system": of which system

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def cpu_us_per_request(self, who: str) -> float | None:
        if who not in self.cpu_s or not self.requests:
            return None
        return self.cpu_s[who] / self.requests * 1e6


@dataclass
class Memory:
    workers: int = 0
    warmup_requests: int = 0
    total_requests: int = 0
    errors: int = 0
    rss_after_warmup_kb: int = 0
    rss_end_kb: int = 0
    trace: list[tuple[int, int]] = field(default_factory=list)  # (requests so far, RSS kB)

    @property
    def growth_mb(self) -> float:
        return (self.rss_end_kb - self.rss_after_warmup_kb) / 1024

    @property
    def growth_ratio(self) -> float:
        return self.rss_end_kb / self.rss_after_warmup_kb if self.rss_after_warmup_kb else float("nan")


@dataclass
class Switch:
    direction: str  # "v1->v2"
    seconds: float | None  # from the table change to the last response from the old variant; None: never complete
    requests: int
    failed: int
    wrong_body: int  # responses whose VERSION output disagrees with the variant header
    mechanism: str
    reported_s: float | None = None  # until every worker had reported the new table version


@dataclass
class Result:
    size: str
    rounds: int
    workers: int
    samples: list[Sample]
    memory: Memory | None
    switches: list[Switch]
    final: dict[str, str]

    def select(self, target: str, connections: int) -> list[Sample]:
        return [s for s in self.samples if s.target == target and s.connections == connections]


# --------------------------------------------------------------------------------------------
# Processes: /proc readings and the servers


def _children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/*/stat (this kernel may lack /proc/<pid>/task/*/children)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    return children


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, ...] (field 3 onwards)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def descendants(pid: int) -> list[int]:
    children, found, todo = _children_map(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its live descendants."""
    user = system = 0
    for p in [pid, *descendants(pid)]:
        stat = _read_stat(p)
        if stat is not None:
            user, system = user + int(stat[11]), system + int(stat[12])  # utime, stime (fields 14 and 15)
    return user / CLK_TCK, system / CLK_TCK


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_pids(pid: int) -> list[int]:
    """The processes that serve requests: the children if the server forks workers, else itself."""
    return descendants(pid) or [pid]


def _free_port() -> int:
    from controlplane.devstack import free_ports

    return free_ports(1)[0]


def _post(url: str, body: str, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _wait_for_infer(name: str, url: str, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    from controlplane.devstack import has_exited, log_tail

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if has_exited(process):
            raise BenchmarkSetupError(f"{name} exited with code {process.poll()}.\n--- {log} ---\n{log_tail(log)}")
        try:
            status, _, body = _post(url, BODY, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise BenchmarkSetupError(f"{name} did not answer {url} with 200 within {timeout:.0f} s ({last}).\n--- {log} ---\n{log_tail(log)}")


@dataclass
class Proc:
    """A server process we started: its Popen (own process group) and where it logs."""
    name: str
    process: subprocess.Popen
    log: Path
    url: str  # base URL

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        from controlplane.devstack import stop_process_group

        stop_process_group(self.process, grace=5.0)


def find_tools() -> dict[str, str]:
    tools = {name: shutil.which(name) or (shutil.which(name, path="/usr/sbin:/sbin") if name == "nginx" else None)
             for name in ("nginx", "wrk")}
    missing = [name for name, path in tools.items() if not path]
    if missing:
        raise BenchmarkSetupError(
            f"missing {' and '.join(missing)}: install the Debian packages nginx-light (or nginx) and wrk "
            "(scripts/test installs them)"
        )
    return tools  # type: ignore[return-value]


def start_triton(work: Path):
    """tritonserver with versions 1 and 2 of the test model loaded (explicit mode, local repository)."""
    import tritonclient.http as httpclient

    from controlplane.devstack.testmodels import python_model_files, test_model_config
    from controlplane.devstack.triton import start_triton_server

    repository = work / "repository"
    for version in (1, 2):
        for rel, content in python_model_files(version=version, latency_ms=0).items():
            path = repository / MODEL / str(version) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    server = start_triton_server(name="bench", repository=str(repository), s3=None, work_dir=work / "triton")
    try:
        config = test_model_config(MODEL)
        config["version_policy"] = {"specific": {"versions": [1, 2]}}
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http_port}", network_timeout=120)
        client.load_model(MODEL, config=json.dumps(config))
        for version in ("1", "2"):
            if not client.is_model_ready(MODEL, version):
                raise BenchmarkSetupError(f"{MODEL} version {version} is not ready after load_model")
        client.close()
    except BaseException:
        server.stop()
        raise
    return server


NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    upstream triton {{
        server 127.0.0.1:{triton_port};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://triton;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx(nginx: str, work: Path, triton_port: int, workers: int) -> Proc:
    from controlplane.devstack import spawn

    directory = work / "nginx"
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, dir=directory, triton_port=triton_port, port=port))
    log = directory / "stderr.log"
    # -e: the error log before the config is read (the packaged default is a system path).
    process = spawn([nginx, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)], log_path=log)
    proc = Proc("nginx", process, log, f"http://127.0.0.1:{port}")
    try:
        _wait_for_infer("nginx", f"{proc.url}{infer_path('direct')}", process, directory / "error.log")
    except BaseException:
        proc.stop()
        raise
    return proc


def table(triton_url: str, weights: tuple[int, ...] = (100,), version: int = 1) -> dict:
    """A routing table (gateway/table.py's contract) with the one open benchmark endpoint."""
    variants = [
        {"name": f"v{n}", "version": n, "weight": weight, "model": MODEL, "servers": [1], "guard": None}
        for n, weight in enumerate(weights, start=1)
    ]
    return {
        "format": FORMAT, "version": version, "generated_at": time.time(),
        "servers": [{"id": 1, "name": "triton-bench", "url": triton_url, "healthy": True}],
        "tokens": [],
        "endpoints": [{
            "name": ENDPOINT, "team": TEAM, "access": "open", "sticky": None, "labels": {},
            "variants": variants, "shadow": None,
        }],
    }


def gateway_command(port: int, workers: int, *, table_file: Path | None = None, source_args: list[str] = ()) -> list[str]:
    command = [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--log-level", "WARNING"]
    if table_file is not None:
        command += ["--table-file", str(table_file)]
    return [*command, *source_args]


# Settings the gateway reads from the environment: the benchmark passes its own on the command line.
GATEWAY_ENV = ("REDIS_URL", "SWITCHYARD_CONTROL_PLANE_URL", "SWITCHYARD_GATEWAY_KEY", "SWITCHYARD_GATEWAY_LOG_LEVEL")


def start_gateway(work: Path, name: str, workers: int, *, table_file: Path | None = None,
                  source_args: list[str] = (), env: dict | None = None) -> Proc:
    from controlplane.devstack import spawn

    port = _free_port()
    log = work / f"{name}.log"
    cwd = Path(__file__).resolve().parent.parent  # the checkout, so that -m gateway finds it
    environment = {k: v for k, v in os.environ.items() if k not in GATEWAY_ENV}
    environment.update(env or {})
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), environment.get("PYTHONPATH")]))
    process = spawn(gateway_command(port, workers, table_file=table_file, source_args=source_args), log_path=log,
                    env=environment, cwd=cwd)
    proc = Proc(name, process, log, f"http://127.0.0.1:{port}")
    try:
        _wait_for_infer(name, f"{proc.url}{infer_path('gateway')}", process, log)
        # All workers up: each forks and binds on its own; give the last one a moment.
        deadline = time.monotonic() + 10
        while len(worker_pids(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
    except BaseException:
        proc.stop()
        raise
    return proc


def infer_path(target: str) -> str:
    if target == "gateway":
        return f"/v2/models/{ENDPOINT}/infer"
    return f"/v2/models/{MODEL}/versions/1/infer"


# --------------------------------------------------------------------------------------------
# wrk

WRK_LINE = re.compile(r"^switchyard-wrk (.*)$", re.MULTILINE)


def parse_wrk(output: str) -> dict[str, float]:
    """The summary line printed by infer.lua's done()."""
    match = WRK_LINE.search(output)
    if match is None:
        raise BenchmarkSetupError(f"wrk printed no summary line:\n{output[-2000:]}")
    return {key: float(value) for key, value in (item.split("=", 1) for item in match.group(1).split())}


def run_wrk(wrk: str, url: str, *, connections: int, seconds: int, threads: int | None = None) -> tuple[dict[str, float], float]:
    """Run wrk once; return its summary and wrk's own CPU seconds."""
    threads = threads or min(2, connections)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(LUA), url],
        capture_output=True, text=True, env={**os.environ, "SWITCHYARD_WRK_BODY": BODY}, timeout=seconds + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise BenchmarkSetupError(f"wrk exited with {completed.returncode}:\n{completed.stdout}\n{completed.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_wrk(completed.stdout), cpu


@dataclass
class Target:
    name: str
    url: str  # full URL including the infer path
    proxy_pid: int | None  # nginx's master or the gateway; None for direct


def measure(wrk: str, target: Target, triton_pid: int, *, connections: int, seconds: int, round_: int) -> Sample:
    pids = {"triton": triton_pid, **({"proxy": target.proxy_pid} if target.proxy_pid else {})}
    cpu_before = {who: tree_cpu_seconds(pid) for who, pid in pids.items()}
    summary, wrk_cpu = run_wrk(wrk, target.url, connections=connections, seconds=seconds,
                               threads=1 if connections == 1 else None)
    cpu = {}
    for who, pid in pids.items():
        user, system = (after - before for after, before in zip(tree_cpu_seconds(pid), cpu_before[who]))
        cpu[who], cpu[f"{who}_system"] = user + system, system
    cpu["wrk"] = wrk_cpu
    errors = int(sum(summary[k] for k in ("connect", "read", "write", "status", "timeout")))
    return Sample(
        target=target.name, connections=connections, round=round_, requests=int(summary["requests"]),
        seconds=summary["duration_us"] / 1e6, errors=errors, p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000, cpu_s=cpu,
    )


def measure_memory(wrk: str, gateway: Proc, spec: Size, out) -> Memory:
    """Gateway worker RSS after a warm-up and after the total, driven by wrk in chunks."""
    url = f"{gateway.url}{infer_path('gateway')}"
    workers = worker_pids(gateway.pid)
    memory = Memory(workers=len(workers))

    def rss() -> int:
        return sum(rss_kb(pid) for pid in workers)

    memory.trace.append((0, rss()))
    done = 0
    for goal, label in ((spec.memory_warmup, "warm-up"), (spec.memory_total, "total")):
        while done < goal:
            summary, _ = run_wrk(wrk, url, connections=32, seconds=spec.memory_chunk_seconds)
            done += int(summary["requests"])
            memory.errors += int(sum(summary[k] for k in ("connect", "read", "write", "status", "timeout")))
            memory.trace.append((done, rss()))
        if label == "warm-up":
            memory.warmup_requests, memory.rss_after_warmup_kb = done, memory.trace[-1][1]
        print(f"  memory: {done:,} requests, worker RSS {memory.trace[-1][1] / 1024:.1f} MB ({label})", file=out, flush=True)
    memory.total_requests, memory.rss_end_kb = done, memory.trace[-1][1]
    if sorted(worker_pids(gateway.pid)) != sorted(workers):
        raise BenchmarkSetupError("the gateway's workers changed during the memory run (a worker died or was restarted)")
    return memory


# --------------------------------------------------------------------------------------------
# Switch time: a table served over HTTP in the control plane's poll contract, and a client


class TableServer:
    """The control plane's side of the gateway contract (gateway/tablesource.py): ``GET
    /api/v1/gateway/table`` with a bearer key, an ETag and 304 on If-None-Match, and ``POST
    /api/v1/gateway/replicas/report``, whose (time, replica, table version) it keeps."""

    PATH = "/api/v1/gateway/table"
    REPORT_PATH = "/api/v1/gateway/replicas/report"

    def __init__(self, key: str):
        self.key = key
        self.lock = threading.Lock()
        self.body = b""
        self.etag = ""
        self.changed_at = 0.0  # time.monotonic() of the last set()
        self.polls = 0
        self.reports: list[tuple[float, str, int]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                if self.path.split("?", 1)[0] != owner.PATH:
                    return self._send(404, b"{}")
                if self.headers.get("Authorization") != f"Bearer {owner.key}":
                    return self._send(401, b'{"detail":"bad key"}')
                with owner.lock:
                    owner.polls += 1
                    body, etag = owner.body, owner.etag
                if self.headers.get("If-None-Match") == etag:
                    return self._send(304, b"", etag)
                return self._send(200, body, etag)

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != owner.REPORT_PATH or self.headers.get("Authorization") != f"Bearer {owner.key}":
                    return self._send(404, b"{}")
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    report = json.loads(body)
                    owner.reports.append((time.monotonic(), str(report["replica_id"]), int(report["table_version"])))
                return self._send(204, b"")

            def _send(self, status, body, etag=None):
                self.send_response(status)
                if etag:
                    self.send_header("ETag", etag)
                if status not in (204, 304):
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status not in (204, 304):
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="table-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def set(self, data: dict) -> float:
        body = json.dumps(data).encode()
        with self.lock:
            self.body, self.etag = body, f'"{data["version"]}"'
            self.changed_at = time.monotonic()
            return self.changed_at

    def all_reported(self, version: int, since: float, replicas: int) -> float | None:
        """When the last of `replicas` workers first reported serving `version` (or later)."""
        first: dict[str, float] = {}
        for at, replica, served in list(self.reports):
            if at >= since and served >= version and replica not in first:
                first[replica] = at
        return max(first.values()) if len(first) >= replicas else None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LoadClient:
    """Keeps requests going through the gateway and records every response.

    `keepalive` loops reuse their connections (how real clients behave); `fresh` loops open a new
    connection for every request, so that over any short window the kernel hands requests to
    every gateway worker, not only the ones holding the long-lived connections.
    Each record is (sent, received, status, variant header, VERSION output), monotonic seconds.
    """

    def __init__(self, url: str, keepalive: int = 12, fresh: int = 4):
        self.url = url
        self.keepalive = keepalive
        self.fresh = fresh
        self.records: list[tuple[float, float, int, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switch-load", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error:
            raise self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # surfaced by stop()
            self.error = e

    async def _main(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.keepalive), timeout=timeout) as kept, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True), timeout=timeout) as fresh:
            await asyncio.gather(*[self._loop(kept) for _ in range(self.keepalive)],
                                 *[self._loop(fresh) for _ in range(self.fresh)])

    async def _loop(self, session) -> None:
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                async with session.post(self.url, data=BODY, headers=headers) as response:
                    body = await response.read()
                    variant = response.headers.get(VARIANT_HEADER, "")
                    status = response.status
            except Exception as e:  # noqa: BLE001 - any failure is a failed request
                self.records.append((sent, time.monotonic(), 0, type(e).__name__, 0))
                await asyncio.sleep(0.01)
                continue
            version = 0
            if status == 200:
                with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
                    version = int(outputs["VERSION"]["data"][0])
            self.records.append((sent, time.monotonic(), status, variant, version))


SWITCH_SETTLE_S = 0.5  # only the new variant for this long after its last old response: switched
SWITCH_TIMEOUT_S = 5.0  # give up on a switch after this long


def switch_time(records, changed_at: float, new: str, now: float) -> float | None:
    """Seconds from the change until the last response (received) not from `new`, once only
    `new` has answered for SWITCH_SETTLE_S; None while that is not (yet) the case."""
    after = [r for r in records if r[1] >= changed_at]
    if not any(r[3] == new for r in after):
        return None
    last_other = max((r[1] for r in after if r[3] != new), default=changed_at)
    if now - last_other < SWITCH_SETTLE_S:
        return None
    return last_other - changed_at


def switch_counts(records, start: float, end: float, old: str, new: str) -> tuple[int, int, int]:
    """Requests received in [start, end), the failed ones (not 200 or an error), and 200s whose
    VERSION output disagrees with the variant header (a request sent to the wrong version)."""
    window = [r for r in records if start <= r[1] < end]
    failed = sum(1 for r in window if r[2] != 200)
    wrong = sum(1 for r in window if r[2] == 200 and (r[3] not in (old, new) or r[4] != int(r[3][1:])))
    return len(window), failed, wrong


# --------------------------------------------------------------------------------------------
# The run


def run(size: str = "full", rounds: int | None = None, out=None, workers: int = WORKERS) -> Result:
    out = out or sys.stdout
    spec = SIZES[size]
    rounds = spec.rounds if rounds is None else rounds
    tools = find_tools()
    work = Path(tempfile.mkdtemp(prefix="switchyard-gateway-bench-"))
    samples: list[Sample] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        t0 = time.perf_counter()
        triton = start_triton(work)
        stack.callback(triton.stop)
        nginx = start_nginx(tools["nginx"], work, triton.http_port, workers)
        stack.callback(nginx.stop)
        table_file = work / "table.json"
        table_file.write_text(json.dumps(table(triton.http_url)))
        gateway = start_gateway(work, "gateway", workers, table_file=table_file)
        stack.callback(gateway.stop)
        print(f"started tritonserver, nginx and the gateway ({len(worker_pids(gateway.pid))} workers) "
              f"in {time.perf_counter() - t0:.1f} s", file=out, flush=True)

        targets = [
            Target("direct", f"{triton.http_url}{infer_path('direct')}", None),
            Target("nginx", f"{nginx.url}{infer_path('nginx')}", nginx.pid),
            Target("gateway", f"{gateway.url}{infer_path('gateway')}", gateway.pid),
        ]
        for target in targets:  # warm-up: connections, Triton's and the proxies' first requests
            run_wrk(tools["wrk"], target.url, connections=8, seconds=1)

        triton_pid = triton.process.pid
        for round_ in range(rounds):
            order = targets[round_ % len(targets):] + targets[:round_ % len(targets)]
            for connections in (1, *CONNECTIONS):
                seconds = spec.latency_seconds if connections == 1 else spec.seconds
                for target in order:
                    sample = measure(tools["wrk"], target, triton_pid, connections=connections, seconds=seconds, round_=round_)
                    samples.append(sample)
                    print(f"  round {round_ + 1}/{rounds} c{connections:<3} {target.name:<7} {sample.rps:8.0f} req/s "
                          f"p50 {sample.p50_ms:6.2f} ms p99 {sample.p99_ms:6.2f} ms errors {sample.errors}",
                          file=out, flush=True)

        memory = measure_memory(tools["wrk"], gateway, spec, out)
        gateway.stop()

        switches = measure_switches(work, triton.http_url, workers, spec, out, "poll")
        redis = start_redis(work)
        if redis is None:
            print("  switch (redis): skipped, redis-server is not installed", file=out, flush=True)
        else:
            stack.callback(redis.stop)
            switches += measure_switches(work, triton.http_url, workers, spec, out, "redis", redis.url)

    result = Result(size=size, rounds=rounds, workers=workers, samples=samples, memory=memory,
                    switches=switches, final={})
    result.final = _final(result)
    _report(out, result)
    return result


def measure_switches(work: Path, triton_url: str, workers: int, spec: Size, out, mechanism: str,
                     redis_url: str | None = None) -> list[Switch]:
    """Flip the weights `spec.switches` times under load through a gateway fed by `mechanism`:
    "poll" (the local control-plane stand-in, polled every second) or "redis" (a PUBLISH on
    `redis_url`; the poll is still configured, as in production, at its 10 s safety-net pace)."""
    key = "bench-" + os.urandom(8).hex()
    tables = TableServer(key)
    tables.start()
    results = []
    with contextlib.ExitStack() as stack:
        stack.callback(tables.stop)
        source_args = ["--control-plane", tables.url]
        publisher = None
        if mechanism == "redis":
            publisher = RedisPublisher(redis_url)
            stack.callback(publisher.close)
            source_args += ["--redis", redis_url]
        version = 1
        first = table(triton_url, (100, 0), version=version)
        tables.set(first)
        if publisher:
            publisher.publish(first)
        gateway = start_gateway(work, f"gateway-{mechanism}", workers, source_args=source_args,
                                env={"SWITCHYARD_GATEWAY_KEY": key})
        stack.callback(gateway.stop)
        client = LoadClient(f"{gateway.url}{infer_path('gateway')}")
        client.start()
        try:
            time.sleep(1.0)
            weights = {"v1": (100, 0), "v2": (0, 100)}
            current = "v1"
            for _ in range(spec.switches):
                # A random phase against the gateway's poll timer, so the flips sample it fairly.
                time.sleep(random.uniform(0.2, 1.2))
                new = "v2" if current == "v1" else "v1"
                version += 1
                data = table(triton_url, weights[new], version=version)
                if publisher:
                    tables.set(data)  # the safety-net poll agrees, but answers only every 10 s
                    changed_at = time.monotonic()
                    publisher.publish(data)
                else:
                    changed_at = tables.set(data)
                seconds = None
                while time.monotonic() - changed_at < SWITCH_TIMEOUT_S:
                    time.sleep(0.1)
                    seconds = switch_time(client.records, changed_at, new, time.monotonic())
                    if seconds is not None:
                        break
                reported = tables.all_reported(version, changed_at, workers)
                requests, failed, wrong = switch_counts(client.records, changed_at, time.monotonic(), current, new)
                results.append(Switch(f"{current}->{new}", seconds, requests, failed, wrong, mechanism,
                                      None if reported is None else reported - changed_at))
                shown = f"not within {SWITCH_TIMEOUT_S:g} s" if seconds is None else f"{seconds:.3f} s"
                told = "not all" if reported is None else f"{reported - changed_at:.3f} s"
                print(f"  switch ({mechanism}) {current}->{new}: responses {shown}, every worker reported {told}; "
                      f"{requests} requests, {failed} failed, {wrong} with the wrong VERSION", file=out, flush=True)
                current = new
        finally:
            client.stop()
    return results


class RedisPublisher:
    """Stores the table under the gateway's key and publishes it on the gateway's channel."""

    def __init__(self, url: str):
        import redis

        from gateway.table import REDIS_KEY, redis_channel

        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.channel, self.key = redis_channel(url), REDIS_KEY

    def publish(self, data: dict) -> None:
        payload = json.dumps(data)
        self.client.set(self.key, payload)
        self.client.publish(self.channel, payload)

    def close(self) -> None:
        self.client.close()


def start_redis(work: Path) -> Proc | None:
    """A private redis-server on a free loopback port, or None if Redis is not installed.

    Private rather than the shared one on 6379, so that nothing else on the machine (a test run's
    gateways, another benchmark) publishes to or listens on the same server meanwhile.
    """
    from controlplane.devstack import spawn, wait_until

    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/local/bin")
    if binary is None:
        return None
    port = _free_port()
    directory = work / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "redis.log"
    process = spawn([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                     "--dir", str(directory)], log_path=log)
    proc = Proc("redis", process, log, f"redis://127.0.0.1:{port}/0")

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    if not wait_until(answers, timeout=10):
        proc.stop()
        raise BenchmarkSetupError(f"redis-server did not answer on port {port}; see {log}")
    return proc


# --------------------------------------------------------------------------------------------
# Report


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def _worst(values) -> str:
    return "never" if any(v is None for v in values) else f"{max(values):.3f}"


def _spread(values) -> str:
    return f"{min(values):.0f}-{max(values):.0f}" if values else "-"


def _final(result: Result) -> dict[str, str]:
    def med(target, connections, attr):
        return _median([getattr(s, attr) for s in result.select(target, connections)])

    final = {}
    added = med("gateway", 1, "p50_ms") - med("direct", 1, "p50_ms")
    final["gateway_added_p50_ms"] = f"{added:.3f} (goal: <= {GOAL_ADDED_P50_MS:g} ms; gateway p50 minus direct p50 at 1 connection, medians)"
    final["nginx_added_p50_ms"] = f"{med('nginx', 1, 'p50_ms') - med('direct', 1, 'p50_ms'):.3f} (goal: none; the same for nginx, for reference)"
    def rounds(target, reference, connections) -> str:
        mine = {s.round: s.rps for s in result.select(target, connections)}
        theirs = {s.round: s.rps for s in result.select(reference, connections)}
        ratios = [mine[r] / theirs[r] for r in sorted(mine) if theirs.get(r)]
        return f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else "one round"

    for connections in CONNECTIONS:
        ratio = med("gateway", connections, "rps") / med("nginx", connections, "rps")
        final[f"gateway_over_nginx_c{connections}"] = (
            f"{ratio:.2f}x (goal: >= {GOAL_RATIO}x; requests/s at {connections} connections, medians; "
            f"per round {rounds('gateway', 'nginx', connections)})")
    for connections in CONNECTIONS:
        ratio = med("nginx", connections, "rps") / med("direct", connections, "rps")
        final[f"nginx_over_direct_c{connections}"] = (
            f"{ratio:.2f}x (goal: none; for reference; per round {rounds('nginx', 'direct', connections)})")
    for who in ("gateway", "nginx"):
        loaded = [s for s in result.samples if s.target == who and s.connections in CONNECTIONS]
        requests = max(1, sum(s.requests for s in loaded))
        cpu = sum(s.cpu_s.get("proxy", 0) for s in loaded) / requests * 1e6
        system = sum(s.cpu_s.get("proxy_system", 0) for s in loaded) / requests * 1e6
        final[f"{who}_cpu_us_per_request"] = (
            f"{cpu:.0f} (goal: none; CPU of all its processes per request at {' and '.join(map(str, CONNECTIONS))} "
            f"connections, {system:.0f} of it in the kernel)")
    errors = sum(s.errors for s in result.samples if s.target == "gateway")
    final["gateway_failed_requests"] = f"{errors} (goal: 0; in the throughput runs)"
    memory = result.memory
    if memory:
        final["gateway_rss_growth_mb"] = (
            f"{memory.growth_mb:.1f} (goal: flat; worker RSS from {memory.warmup_requests:,} to {memory.total_requests:,} requests, "
            f"{memory.rss_end_kb / 1024:.1f} MB at the end)")
        final["gateway_rss_growth_ratio"] = f"{memory.growth_ratio:.3f}x (goal: <= {1 + GOAL_RSS_GROWTH:.2f}x)"
    for mechanism in SWITCH_MECHANISMS:
        switches = [s for s in result.switches if s.mechanism == mechanism]
        suffix = "" if mechanism == "poll" else f"_{mechanism}"
        how = "the table polled over HTTP each second" if mechanism == "poll" else "the table pushed through Redis"
        if not switches:
            final[f"gateway_switch_s{suffix}"] = f"skipped (goal: <= {GOAL_SWITCH_S:g} s; {how}; redis-server is not installed)"
            continue
        times = [s.seconds for s in switches]
        reported = [s.reported_s for s in switches]
        final[f"gateway_switch_s{suffix}"] = (
            f"{_worst(times)} (goal: <= {GOAL_SWITCH_S:g} s; worst of {len(times)} weight flips until 100% of responses "
            f"came from the new variant, {how}; median {_median(times):.3f} s)")
        final[f"gateway_switch_reported_s{suffix}"] = (
            f"{_worst(reported)} (goal: none; until every worker had reported the new table version, worst; "
            f"median {_median(reported):.3f} s)")
        final[f"gateway_switch_failed_requests{suffix}"] = (
            f"{sum(s.failed for s in switches)} (goal: 0; of {sum(s.requests for s in switches)} during the flips, "
            f"{sum(s.wrong_body for s in switches)} answered by a version other than the variant header says)")
    return final


def _report(out, result: Result) -> None:
    print(f"\nGateway throughput, size {result.size}, {result.rounds} round(s), gateway and nginx with {result.workers} workers, "
          f"{os.cpu_count()} cores, model '{MODEL}' (Python backend, no work)", file=out)
    print(f"{'conn':>4} {'target':<8} {'req/s med':>9} {'min-max':>13} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'proxy us/req (sys)':>18} {'triton us/req':>13} {'wrk us/req':>10}", file=out)
    for connections in (1, *CONNECTIONS):
        for target in TARGETS:
            rows = result.select(target, connections)
            if not rows:
                continue
            rps = [s.rps for s in rows]
            proxy = _median([s.cpu_us_per_request("proxy") for s in rows])
            system = _median([s.cpu_us_per_request("proxy_system") for s in rows])
            shown = "-" if proxy != proxy else f"{proxy:.0f} ({system:.0f})"
            print(f"{connections:>4} {target:<8} {_median(rps):9.0f} {_spread(rps):>13} {_median([s.p50_ms for s in rows]):7.2f} "
                  f"{_median([s.p99_ms for s in rows]):7.2f} {sum(s.errors for s in rows):>6} {shown:>18} "
                  f"{_median([s.cpu_us_per_request('triton') for s in rows]):13.0f} "
                  f"{_median([s.cpu_us_per_request('wrk') for s in rows]):10.0f}", file=out)
    print("req/s min-max over rounds; p50/p99 medians over rounds; us/req: CPU microseconds per request "
          "(utime+stime of the process tree, sys: of it in the kernel), medians", file=out)
    if result.memory:
        m = result.memory
        trace = ", ".join(f"{n // 1000}k: {kb / 1024:.1f}" for n, kb in m.trace)
        print(f"gateway worker RSS in MB ({m.workers} workers) after requests: {trace}", file=out)
    for sw in result.switches:
        shown = "never" if sw.seconds is None else f"{sw.seconds:.3f} s"
        told = "never" if sw.reported_s is None else f"{sw.reported_s:.3f} s"
        print(f"switch {sw.direction} ({sw.mechanism}): responses {shown}, reports {told}, {sw.requests} requests, "
              f"{sw.failed} failed", file=out)
    for name, value in result.final.items():
        print(f"{name}: {value}", file=out)
    out.flush()


def main(size: str = "full", rounds: int | None = None) -> int:
    run(size=size, rounds=rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:2] or ["full"])))
