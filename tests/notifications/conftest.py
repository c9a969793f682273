"""Webhook fixtures: team admins of vision and speech, endpoints of both teams, and a real HTTP
receiver on loopback that records what it gets and answers with scripted status codes."""
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controlplane.accounts.models import Membership, Role
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.endpoints.models import Endpoint
from controlplane.notifications import services
from tests.conftest import _user
from tests.quotas.conftest import make_model


@pytest.fixture(autouse=True)
def fast_backoff(settings):
    settings.SWITCHYARD_WEBHOOK_BACKOFF_SECONDS = 0.01


@pytest.fixture
def as_admin(team_admin):
    return Actor(user=team_admin, source="api")


@pytest.fixture
def other_admin(other_team):
    user = _user("olga")
    Membership.objects.create(user=user, team=other_team, role=Role.ADMIN)
    return user


@pytest.fixture
def endpoint(team):
    return Endpoint.objects.create(team=team, model=make_model(team, "fraud-scorer"), name="fraud", kind="pinned")


@pytest.fixture
def other_endpoint(team):
    return Endpoint.objects.create(team=team, model=make_model(team, "ranker"), name="ranker", kind="pinned")


@pytest.fixture
def foreign_endpoint(other_team):
    return Endpoint.objects.create(team=other_team, model=make_model(other_team, "asr"), name="asr", kind="pinned")


def make_webhook(actor, team, url="http://127.0.0.1:9/hook", **extra):
    return services.webhook_create(actor=actor, team=team, url=url, **extra)


def events(action=None):
    query = AuditEvent.objects.order_by("id")
    return list(query.filter(action=action) if action else query)


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (the last one repeats)."""

    url: str
    statuses: list = field(default_factory=lambda: [200])
    received: list = field(default_factory=list)
    headers: dict = field(default_factory=dict)  # extra response headers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            index = min(len(self.received) - 1, len(self.statuses) - 1)
            return self.statuses[index]


@pytest.fixture
def receiver():
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook = state["receiver"]
            with hook.lock:
                hook.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            code = hook.next_status()
            answer = b"ok" if code < 300 else b"receiver says no"
            self.send_response(code)
            for name, value in hook.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["receiver"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/switchyard")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state["receiver"]
    server.shutdown()
    server.server_close()
