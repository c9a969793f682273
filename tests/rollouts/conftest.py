"""The whole stack for rollouts, on loopback: the real Triton fleet, a real gateway fed by the live
control plane (Redis push), a real Prometheus scraping both, and a real Celery worker PROCESS
(with its embedded beat) on the test database, which a test may kill and start again.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import redis
import tritonclient.http as triton_http
from django.conf import settings as django_settings
from django.db import connection

from controlplane.audit.context import Actor
from controlplane.devstack.testmodels import python_model_files
from controlplane.endpoints.publication import REDIS_KEY, REDIS_VERSION_KEY
from controlplane.endpoints.services import endpoint_create
from controlplane.fleet.models import Pool, Server
from controlplane.placements import services as placements
from controlplane.registry.labels import label_set
from controlplane.registry.services import model_create, version_register
from tests.conftest import TENSORS_IN, TENSORS_OUT
from tests.gateway.gateway_support import GatewayProcess, unload_model
from tests.metrics.conftest import prometheus, prometheus_token  # noqa: F401 (fixtures)
from workers.placements import apply_placement

ROOT = Path(__file__).resolve().parents[2]
KEY = "rollout-gateway-key"
MODEL = "rollout-scorer"
TRITON_NAME = f"vision.{MODEL}"
ENDPOINT = f"vision.{MODEL}"
# v1 blue; v2 a healthy green; v3 fails every second request (so its first, the warm-up, passes);
# v4 answers 150 ms slower than blue; v5 fails every request, the warm-up included.
VERSIONS = {1: {}, 2: {}, 3: {"failure_rate": 0.5, "failure_mode": "error_response"}, 4: {"latency_ms": 150},
            5: {"failure_rate": 1.0, "failure_mode": "error_response"}}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class WorkerProcess:
    """`celery worker -B` as its own process on the test database; kill() is a SIGKILL, like a
    machine that dies mid-step."""

    def __init__(self, env: dict, log_path: Path):
        self.env, self.log_path = env, log_path
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "-B", "--pool", "solo",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "-n", f"rollout{self.starts}@%h",
             "--schedule", str(self.log_path.with_suffix(f".beat{self.starts}"))],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}{':' + s['PASSWORD'] if s['PASSWORD'] else ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@dataclass
class Answer:
    at: float
    user: str
    version: int | None  # None: failed
    error: str = ""  # what the client got instead of an answer


@dataclass
class Load:
    """Steady traffic through the gateway from 24 sticky users, each answer recorded."""

    url: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, threads: int = 2) -> Load:
        """Start the clients and return once traffic flows through the gateway."""
        for k in range(threads):
            thread = threading.Thread(target=self._run, args=(k, threads), daemon=True)
            thread.start()
            self._threads.append(thread)
        wait_for(lambda: len(self.answers) > 20, 20, "traffic through the gateway")
        return self

    def _run(self, k: int, n: int) -> None:
        client = triton_http.InferenceServerClient(self.url.removeprefix("http://"), network_timeout=10)
        tensor = triton_http.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        i = k
        while not self._stop.is_set():
            user = f"user-{i % 24}"
            i += n
            try:
                result = client.infer(ENDPOINT, [tensor], headers={"X-User-Id": user})
                self.answers.append(Answer(time.monotonic(), user, int(result.as_numpy("VERSION")[0][0])))
            except Exception as exc:  # noqa: BLE001 - a failed answer is data here
                self.answers.append(Answer(time.monotonic(), user, None, str(exc)))
                time.sleep(0.005)
        client.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def since(self, t: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.at >= t]


@dataclass
class Stack:
    actor: Actor
    model: object
    endpoint: object
    servers: list
    gateway: GatewayProcess
    worker: WorkerProcess
    triton: list


@pytest.fixture
def stack(s3, team, deployer, triton_fleet, live_server, prometheus, prometheus_token, settings, tmp_path):  # noqa: F811
    """vision/rollout-scorer v1 READY on fleet-0 and serving through a label-bound endpoint
    (stable → v1, open access, sticky on X-User-Id); a gateway, Prometheus and a worker running."""
    settings.SWITCHYARD_GATEWAY_KEY = KEY
    settings.SWITCHYARD_PROMETHEUS_URL = prometheus.url
    redis.Redis.from_url(django_settings.REDIS_URL).delete(REDIS_KEY, REDIS_VERSION_KEY)
    actor = Actor(user=deployer, source="api")
    model = model_create(actor=actor, team=team, name=MODEL, backend="python", max_batch_size=8,
                         inputs=TENSORS_IN, outputs=TENSORS_OUT)
    for number, knobs in VERSIONS.items():
        version_register(actor=actor, model=model, version=number, contents=python_model_files(version=number, **knobs))
    label_set(actor=actor, model=model, name="stable", version=1, reason="rollout tests")
    pool = Pool.objects.get_or_create(name="cpu")[0]
    servers = [Server.objects.create(name=f"fleet-{i}", pool=pool, http_url=t.http_url, metrics_url=t.metrics_url)
               for i, t in enumerate(triton_fleet)]
    placement, _ = placements.placement_create(actor=actor, model=model, versions=[1], servers=servers[:1])
    assert apply_placement(placement.pk) == {"ready": 1}
    endpoint = endpoint_create(actor=actor, team=team, name=MODEL, model=model, kind="label", label="stable",
                               access="open", sticky_header="X-User-Id")
    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": django_settings.REDIS_URL,
           "SWITCHYARD_DEBUG": "true", "SWITCHYARD_PROMETHEUS_URL": prometheus.url, "SWITCHYARD_GATEWAY_KEY": KEY,
           "SWITCHYARD_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    gateway = GatewayProcess(["--control-plane", live_server.url, "--key", KEY, "--redis", django_settings.REDIS_URL,
                              "--poll-interval", "1", "--replica-id", "rollout"], tmp_path / "gateway.log")
    try:
        wait_for(lambda: _serves(gateway.url), 20, "the gateway to serve the endpoint")
        worker.start()
        yield Stack(actor, model, endpoint, servers, gateway, worker, triton_fleet)
    finally:
        worker.stop()
        gateway.stop()
        unload_model(triton_fleet, TRITON_NAME)
        for name in ("worker.log", "gateway.log"):
            path = tmp_path / name
            if path.exists():
                sys.stderr.write(f"--- {name} (tail) ---\n{path.read_text(errors='replace')[-4000:]}\n")


def _serves(url: str) -> bool:
    try:
        client = triton_http.InferenceServerClient(url.removeprefix("http://"))
        tensor = triton_http.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        return int(client.infer(ENDPOINT, [tensor]).as_numpy("VERSION")[0][0]) == 1
    except Exception:  # noqa: BLE001 - not yet
        return False
