"""Fixtures for the command line's tests: a live server with an endpoint ready to deploy to, a team
token, and `run` / `start`, which run the installed `switchyard` console script as a subprocess.

No worker runs here: a deployment stays where the API put it until the test moves it with
`transitions.apply_event`, the function the worker uses (`drive`, in a thread while the CLI polls).
Blue is READY on two CPU servers as rows only (no Triton), as the endpoint tests do."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.celery import app
from controlplane.deployments.machine import Event
from controlplane.deployments.models import Deployment
from controlplane.deployments.services.transitions import apply_event
from controlplane.endpoints import services as endpoint_services
from controlplane.fleet.models import Pool
from controlplane.registry.labels import label_set
from tests.endpoints.conftest import make_servers, place_ready
from tests.quotas.conftest import make_version

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("switchyard")
ENDPOINT = "vision.fraud-scorer"
WORKER = Actor.system("worker")


def command() -> list[str]:
    """The real console entry: the installed script, else the module it points at."""
    return [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "cli.main"]


@pytest.fixture
def endpoint(model, team_admin):
    """vision.fraud-scorer follows `stable` = v1, READY on cpu-1 and cpu-2; v2 and v3 are ready to deploy."""
    for n in (1, 2, 3):
        make_version(model, n)
    label_set(actor=Actor.system(), model=model, name="stable", version=1, reason="seed")
    label_set(actor=Actor.system(), model=model, name="canary", version=3, reason="seed")
    place_ready(model, [1], make_servers(Pool.objects.create(name="cpu"), "cpu-1", "cpu-2"))
    return endpoint_services.endpoint_create(actor=Actor(user=team_admin, source="api"), team=model.team, model=model,
                                             name="fraud-scorer", kind="label", label="stable")


@pytest.fixture
def token(team, team_admin):
    """A team token (the service account svc.vision) with the deploy scope."""
    _, secret = token_create(actor=Actor(user=team_admin, source="api"), team=team, name="ci", scopes=["deploy"],
                             expires_at=timezone.now() + timedelta(days=1))
    return secret


@pytest.fixture
def cli_env(live_server, token):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    env.update(SWITCHYARD_URL=live_server.url, SWITCHYARD_TOKEN=token, PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def run(cli_env):
    """``run("deploy", ENDPOINT, "--version", "2")`` → CompletedProcess (text)."""

    def call(*args, env=None, timeout=60):
        return subprocess.run([*command(), *args], check=False, cwd=ROOT, env=env or cli_env, capture_output=True, text=True,
                              timeout=timeout)

    return call


@pytest.fixture
def start(cli_env):
    """``start(...)`` → a running Popen; ``.communicate(timeout=...)`` collects it."""
    started = []

    def call(*args):
        p = subprocess.Popen([*command(), *args], cwd=ROOT, env=cli_env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        started.append(p)
        return p

    yield call
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture(autouse=True)
def _purge_queued_tasks():
    """The API queues deployments.advance for a worker that never runs here."""
    yield
    app.control.purge()


def step(d: Deployment, event: Event, **changes) -> Deployment:
    moved = apply_event(d, event, actor=WORKER, reason=changes.pop("reason", ""), changes=changes)
    assert moved is not None, f"{d.pk}: {d.state} did not take {event}"
    return moved


def wait_for_deployment(timeout=30.0) -> Deployment:
    """The newest deployment, once the CLI (in another process) has created it."""
    stop = time.monotonic() + timeout
    while time.monotonic() < stop:
        d = Deployment.objects.order_by("-id").first()
        if d is not None:
            return d
        time.sleep(0.05)
    raise AssertionError("the CLI created no deployment")


def to_analyzing(d: Deployment, pause=0.0) -> Deployment:
    """pending → validating → provisioning → verifying → shifting (step 1) → baking → analyzing."""
    for event, changes in ((Event.BEGIN, {}), (Event.OK, {}), (Event.OK, {}),
                           (Event.OK, {"step_index": 0, "traffic_percent": d.steps[0]["percent"]}),
                           (Event.OK, {}), (Event.OK, {})):
        time.sleep(pause)
        d = step(d, event, **changes)
    return d


class Driver(threading.Thread):
    """Moves the deployment the CLI creates (or ``deployment_id``) as ``script(d)`` says, in a thread
    with its own database connection. ``error`` holds what went wrong, for the test to raise."""

    def __init__(self, script, deployment_id: int | None = None):
        super().__init__(daemon=True)
        self.script, self.deployment_id, self.error = script, deployment_id, None

    def run(self):
        try:
            d = (Deployment.objects.get(pk=self.deployment_id) if self.deployment_id is not None
                 else wait_for_deployment())
            self.script(d)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc
        finally:
            connection.close()

    def finish(self, timeout=30.0):
        self.join(timeout)
        assert not self.is_alive(), "the driver did not finish"
        if self.error is not None:
            raise self.error
