"""A real Prometheus (Debian's package) for the session, discovering targets through the
discovery endpoint served by pytest-django's live_server.

Prometheus is configured once, with the shipped rules rendered at a short window (TEST_WINDOW)
and every interval at 1 s. It reads its bearer token from a file on each discovery request, so a
test's `prometheus_token` (a platform admin's read token, made in that test's database) takes
effect without a restart. Discovery that fails (between tests, when the token is gone) keeps the
last targets: look targets up by their labels.
"""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from controlplane.devstack.prometheus import PrometheusServer, start_prometheus
from controlplane.metrics.config import TOKEN_FILE, render_files, write_files

TEST_WINDOW = "10s"
WINDOW_S = 10
INTERVAL_S = 1


@pytest.fixture(scope="session")
def prometheus(live_server, devstack_dir):
    config_dir = devstack_dir / "prometheus"
    files = render_files(switchyard_url=live_server.url, window=TEST_WINDOW, gateway_scrape_s=INTERVAL_S,
                         triton_scrape_s=INTERVAL_S, refresh_s=INTERVAL_S)
    write_files(config_dir, files)
    _no_token(config_dir)
    server = start_prometheus(config_dir=config_dir, log_dir=devstack_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prometheus_token(prometheus, transactional_db):
    """A platform admin's read token, written where Prometheus reads it."""
    from controlplane.accounts.services import token_create
    from controlplane.audit.context import Actor

    admin = get_user_model().objects.create_user(username="prometheus-admin", password=None, is_staff=True)
    _, secret = token_create(actor=Actor(user=admin, source="system"), user=admin, name="prometheus",
                             scopes=["read"], expires_at=timezone.now() + timedelta(days=1))
    write_files(prometheus.config_dir, {}, token=secret, credentials_file=TOKEN_FILE)
    yield secret
    _no_token(prometheus.config_dir)


def _no_token(config_dir):
    """Between tests the database is closed to the live server: an empty token is refused (401)
    before any query, so Prometheus's discovery calls stay quiet."""
    (config_dir / TOKEN_FILE).write_text("\n")


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def values(prom: PrometheusServer, expr: str) -> dict[tuple, float]:
    """An instant query as {tuple of sorted label items: value}."""
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in prom.query(expr)}


def scalar(prom: PrometheusServer, expr: str) -> float | None:
    result = prom.query(expr)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


class Traffic:
    """POSTs `body` to `url` at a steady `rate` per second from one thread, until stopped,
    remembering when each request was sent and its status (0: no answer)."""

    def __init__(self, url: str, body: bytes, rate: float):
        self.url, self.body, self.period = url, body, 1.0 / rate
        self.sent: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        next_at = time.monotonic()
        while not self._stop.is_set():
            request = urllib.request.Request(self.url, data=self.body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
                    status = response.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                status = 0
            self.sent.append((time.monotonic(), status))
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def since(self, seconds: float) -> list[int]:
        cutoff = time.monotonic() - seconds
        return [status for at, status in list(self.sent) if at >= cutoff]

    def stop(self):
        self._stop.set()
        self._thread.join(10)
