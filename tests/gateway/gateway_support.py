"""Helpers for the gateway's end-to-end tests: models on the real fleet, routing tables, a gateway
subprocess, a stand-in control plane that serves the table, keep-alive HTTP clients and a
Prometheus text reader. Not a test module; the test_gateway_* modules import it."""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from controlplane.devstack import free_ports
from controlplane.devstack.testmodels import (
    python_model_files,
    test_model_config,
    upload_model_version,
)
from gateway.table import FORMAT, parse_table
from tests.fleet_fixtures import TEST_BUCKET, TEST_PREFIX

ROOT = Path(__file__).resolve().parents[2]
INFER_BODY = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4],
                                     "data": [1.0, 2.0, 3.0, 4.0]}]}).encode()


def run_async(coro, timeout: float = 20):
    """`asyncio.run(coro)` with a timeout, in a thread of its own: in a full run, pytest-playwright's
    sync API keeps an event loop running in the main thread for the rest of the session, and
    asyncio.run refuses to start beside it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout)).result()


def unique(base: str = "gw") -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


# -- models on the fleet ---------------------------------------------------------------------------

def _post(url: str, payload: dict, timeout: float = 60) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def upload_versions(s3_client, name: str, versions: dict[int, dict]) -> None:
    for version, options in versions.items():
        upload_model_version(s3_client, bucket=TEST_BUCKET, prefix=TEST_PREFIX, model_name=name, version=version,
                             files=python_model_files(version=version, **options))


def load_model(servers: Iterable, name: str, versions: Iterable[int]) -> None:
    """Load `versions` of `name` side by side on each server (in parallel), as a same-servers
    deployment does, through Triton's repository API."""
    config = {**test_model_config(name), "version_policy": {"specific": {"versions": sorted(versions)}}}
    payload = {"parameters": {"config": json.dumps(config)}}

    def one(server):
        status, body = _post(f"{server.http_url}/v2/repository/models/{name}/load", payload)
        assert status == 200, f"load {name} on {server.name}: {status} {body[:300]!r}"

    servers = list(servers)
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(one, servers))


def unload_model(servers: Iterable, name: str) -> None:
    """Unload and wait until no version is UNLOADING (a server is not ready meanwhile)."""
    for server in servers:
        if not server.is_running():
            continue
        _post(f"{server.http_url}/v2/repository/models/{name}/unload", {}, timeout=30)
    for server in servers:
        deadline = time.monotonic() + 20
        while server.is_running() and time.monotonic() < deadline:
            status, body = _post(f"{server.http_url}/v2/repository/index", {}, timeout=10)
            if status != 200 or all(r.get("state") != "UNLOADING" for r in json.loads(body) if r["name"] == name):
                break
            time.sleep(0.05)


def model_state(server, name: str, version: int) -> str | None:
    status, body = _post(f"{server.http_url}/v2/repository/index", {}, timeout=10)
    assert status == 200
    for row in json.loads(body):
        if row["name"] == name and row.get("version") == str(version):
            return row["state"]
    return None


# -- routing tables --------------------------------------------------------------------------------

def server_entry(sid: int, triton, *, healthy: bool = True) -> dict:
    return {"id": sid, "name": triton.name, "url": triton.http_url, "healthy": healthy}


def variant(name: str, version: int, weight: int, model: str, servers: list[int], *, guard: dict | None = None) -> dict:
    return {"name": name, "version": version, "weight": weight, "model": model, "servers": list(servers),
            "guard": guard}


def endpoint(name: str, variants: list[dict], *, access: str = "open", sticky: dict | None = None,
             labels: dict | None = None, shadow: dict | None = None) -> dict:
    return {"name": name, "team": name.split(".", 1)[0], "access": access, "sticky": sticky,
            "labels": labels or {}, "variants": variants, "shadow": shadow}


def table(version: int, servers: list[dict], endpoints: list[dict], tokens: list[dict] | None = None) -> dict:
    data = {"format": FORMAT, "version": version, "generated_at": time.time(), "servers": servers,
            "tokens": tokens or [], "endpoints": endpoints}
    parse_table(data)  # the contract: a test table must be one the control plane could publish
    return data


# -- the gateway as a real subprocess --------------------------------------------------------------

class GatewayProcess:
    def __init__(self, args: list[str], log_path: Path, *, workers: int = 1):
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", str(workers), "--log-level", "WARNING", *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for var in ("SWITCHYARD_CONTROL_PLANE_URL", "SWITCHYARD_GATEWAY_KEY", "REDIS_URL"):
            env.pop(var, None)
        self._log = open(log_path, "ab")  # noqa: SIM115 (open for the process's lifetime; closed in stop())
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._log,
                                        start_new_session=True)
        line = self._read_line(timeout=30)
        if "listening on" not in line:
            self.stop()
            raise AssertionError(f"gateway did not start: {line!r}\n{log_path.read_text()[-3000:]}")

    def _read_line(self, timeout: float) -> str:
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return result[0].decode() if result else ""

    def stop(self) -> int | None:
        """SIGTERM (graceful), then SIGKILL the whole session if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # workers left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        if self.process.poll() is None:
            self.process.wait(5)
        self._log.close()
        return self.process.returncode

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
            return response.read().decode()


def start_gateway(tmp_path: Path, *, table_data: dict | None = None, control_plane: str | None = None,
                  extra: list[str] | None = None, workers: int = 1) -> GatewayProcess:
    args = list(extra or [])
    if table_data is not None:
        path = tmp_path / f"table-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(table_data))
        args += ["--table-file", str(path)]
    if control_plane is not None:
        args += ["--control-plane", control_plane, "--poll-interval", "0.1"]
    return GatewayProcess(args, tmp_path / "gateway.log", workers=workers)


# -- a stand-in control plane: the table endpoint and the replica reports ---------------------------

class TableServer:
    """GET /api/v1/gateway/table (with ETag) and POST /api/v1/gateway/replicas/report, on a fixed
    port so that it can be stopped (an outage) and started again."""

    def __init__(self, data: dict):
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = data
        self.reports: dict[str, dict] = {}
        self.table_requests = 0
        self._httpd: ThreadingHTTPServer | None = None
        self.start()

    def set(self, data: dict) -> None:
        self.data = data

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/api/v1/gateway/table":
                    return self._send(404, b'{"detail": "not found"}')
                owner.table_requests += 1
                etag = f'"v{owner.data["version"]}"'
                if self.headers.get("If-None-Match") == etag:
                    return self._send(304, b"", etag)
                return self._send(200, json.dumps(owner.data).encode(), etag)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/api/v1/gateway/replicas/report":
                    return self._send(404, b'{"detail": "not found"}')
                report = json.loads(body)
                owner.reports[report["replica_id"]] = report
                return self._send(200, b'{"ok": true}')

            def _send(self, status, body, etag=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


# -- a fake upstream ----------------------------------------------------------------------------------

class FakeUpstream:
    """A TCP server standing in for a Triton server that misbehaves, or that shows what it got.

    Per request it reads the head and the Content-Length body, then by `mode`: "drop" closes the
    connection without a word (a server that died with the request in hand), "hang" never answers,
    "half" starts an answer and closes the connection in the middle of it (a server that died while
    answering), "echo" answers 200 with a JSON account of the request line, headers and body length (keep-alive),
    "slow" does the same after 0.5 s; "echo-then-drop" and "echo-then-hang" answer a connection's
    first request and drop or ignore the next. `closed` counts connections the gateway closed.
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.received: list[dict] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        self.connections = 0
        self.closed = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        data = b""
        served_here = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        self.closed += 1
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                line, *lines = head.decode("latin-1").split("\r\n")
                headers = [tuple(x.split(": ", 1)) for x in lines]
                length = int({k.lower(): v for k, v in headers}.get("content-length", 0))
                while len(data) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                body, data = data[:length], data[length:]
                request = {"line": line, "headers": headers, "body_length": len(body)}
                self.received.append(request)
                served_here += 1
                mode = self.mode
                if mode.startswith("echo-then-"):
                    mode = "echo" if served_here == 1 else mode.removeprefix("echo-then-")
                if mode == "drop":
                    return
                if mode == "half":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"outp")
                    return
                if mode == "hang":
                    self.held.append(conn.dup())
                    return
                if self.mode == "slow":
                    time.sleep(0.5)
                answer = json.dumps(request).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Upstream: fake\r\n"
                             b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(answer), answer))

    def entry(self, sid: int) -> dict:
        return {"id": sid, "name": f"fake-{self.mode}", "url": self.url, "healthy": True}

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


# -- clients ----------------------------------------------------------------------------------------

class Client:
    """One keep-alive connection (http.client), reconnecting if the server closes it."""

    def __init__(self, url: str, timeout: float = 30):
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        result = (response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        if response.will_close:
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return result

    def get(self, path: str, headers: dict | None = None):
        return self.request("GET", path, headers=headers)

    def infer(self, endpoint: str, headers: dict | None = None, version: str | None = None):
        path = f"/v2/models/{endpoint}" + (f"/versions/{version}" if version else "") + "/infer"
        return self.request("POST", path, INFER_BODY, headers)

    def close(self) -> None:
        self.conn.close()


def many(url: str, count: int, call, *, threads: int = 16) -> list:
    """`call(client, i)` for i in range(count), over `threads` keep-alive connections."""
    local = threading.local()

    def one(i):
        if not hasattr(local, "client"):
            local.client = Client(url)
        return call(local.client, i)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count), chunksize=max(1, count // (threads * 8))))


class LoadLoop:
    """Requests in a loop on `threads` connections until stopped; every answer is recorded.
    `pause()` holds new requests back and waits for those in flight (a quiet moment on demand)."""

    def __init__(self, url: str, call, *, threads: int = 4):
        self.url = url
        self.call = call
        self.results: list[tuple[float, int, dict, bytes]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._gate = threading.Condition()
        self._paused = False
        self._in_flight = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        client = Client(self.url)
        while not self._stop.is_set():
            with self._gate:
                while self._paused:
                    self._gate.wait()
                self._in_flight += 1
            try:
                status, headers, body = self.call(client)
                self.results.append((time.monotonic(), status, headers, body))
            except Exception as e:  # noqa: BLE001 (a reset or a timeout is a failed request too)
                self.errors.append(f"{type(e).__name__}: {e}")
                client = Client(self.url)
            finally:
                with self._gate:
                    self._in_flight -= 1
                    self._gate.notify_all()
        client.close()

    def pause(self) -> None:
        with self._gate:
            self._paused = True
            while self._in_flight:
                self._gate.wait()

    def resume(self) -> None:
        with self._gate:
            self._paused = False
            self._gate.notify_all()

    def stop(self) -> None:
        self._stop.set()
        self.resume()
        for t in self._threads:
            t.join(30)

    def failures(self) -> list:
        return self.errors + [(s, b[:200]) for _, s, _, b in self.results if s != 200]

    def count_since(self, t0: float) -> int:
        return sum(1 for t, *_ in self.results if t >= t0)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- Prometheus text --------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in _LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric(text: str, name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for n, ls, v in samples(text) if n == name and all(ls.get(k) == v2 for k, v2 in labels.items()))
