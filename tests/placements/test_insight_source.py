"""Batching insight from Prometheus when it is configured, from Triton's sampled statistics when
it is not; the live fragment says which, and a down Prometheus costs it at most a second."""
import socket
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlplane.audit.context import Actor
from controlplane.fleet.triton_client import TritonClient
from controlplane.metrics import series as S
from controlplane.placements import services
from controlplane.placements.insight import VersionRates, insight_from_rates
from controlplane.placements.models import TargetSample
from tests.metrics.static_prometheus import rule, start_static_prometheus

CLOSED = "http://127.0.0.1:9"
MODEL = "vision.fraud-scorer"


def test_rates_add_up_over_versions():
    insight = insight_from_rates([VersionRates(10.0, 10.0, 2.0, 0.1), VersionRates(30.0, 30.0, 6.0, 0.5)], window_seconds=60)
    assert insight.batch_size == pytest.approx(4.0)  # 40 inferences over 10 executions
    assert insight.queue_share == pytest.approx(0.4)  # weighted by requests
    assert (insight.requests_per_second, insight.basis, insight.requests, insight.window_seconds) == (40.0, "prometheus", 2400, 60)


def test_no_value_is_no_data_not_zero():
    nothing = insight_from_rates([], window_seconds=60)
    assert (nothing.batch_size, nothing.queue_share, nothing.requests_per_second, nothing.basis) == (None, None, None, "")
    idle = insight_from_rates([VersionRates(0.0, 0.0, None, None)], window_seconds=60)
    assert (idle.batch_size, idle.queue_share, idle.requests_per_second) == (None, None, 0.0)


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    rules = []
    for server, version, inf, batch, share in (("triton-0", "1", 10.0, 2.0, 0.1), ("triton-1", "1", 30.0, 6.0, 0.5),
                                               ("triton-0", "2", 99.0, 8.0, 0.9)):  # v2 is not this placement's
        labels = {"server": server, "model": MODEL, "version": version}
        rules += [rule(S.TRITON_INFERENCES.name, inf, **labels), rule(S.TRITON_REQUESTS.name, inf, **labels),
                  rule(S.TRITON_BATCH_SIZE.name, batch, **labels), rule(S.TRITON_QUEUE_SHARE.name, share, **labels)]
    server = start_static_prometheus(tmp_path_factory.mktemp("prom-insight"), rules)
    yield server
    server.stop()


@pytest.fixture
def placed(deployer, model, versions, offline_servers):
    placement, _ = services.placement_create(actor=Actor(user=deployer, source="api"), model=model, versions=[1],
                                             servers=offline_servers)
    services.placements_sample()  # a sample per target (the servers refuse: no states)
    return placement


def fragment(client, placement) -> tuple[str, int, float]:
    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/placements/{placement.pk}/live/")
    assert response.status_code == 200
    return response.content.decode(), len(queries), time.monotonic() - started


def test_the_fragment_reads_prometheus_when_configured(client, viewer, placed, prom, settings):
    client.force_login(viewer)
    settings.SWITCHYARD_PROMETHEUS_URL = ""
    html, triton_queries, _ = fragment(client, placed)
    assert 'data-insight-source="triton"' in html and "Prometheus is not configured" in html

    settings.SWITCHYARD_PROMETHEUS_URL = prom.url
    live = services.placement_live(placed)
    by_server = {t.server_name: live[t.pk].insight for t in placed.targets.all()}
    assert by_server["triton-0"].batch_size == pytest.approx(2.0) and by_server["triton-0"].requests_per_second == 10.0
    assert by_server["triton-1"].batch_size == pytest.approx(6.0) and by_server["triton-1"].queue_share == pytest.approx(0.5)
    assert {one.insight_source for one in live.values()} == {"prometheus"}
    html, prometheus_queries, _ = fragment(client, placed)
    assert 'data-insight-source="prometheus"' in html and "one-minute rates" in html
    assert "6.00" in html and "50 %" in html and "last minute" in html
    assert prometheus_queries == triton_queries  # Prometheus adds no database query


def test_a_down_prometheus_costs_the_fragment_at_most_a_second_and_says_why(client, viewer, placed, settings):
    client.force_login(viewer)
    settings.SWITCHYARD_PROMETHEUS_URL = CLOSED
    html, _, took = fragment(client, placed)
    assert took < 1.0
    assert 'data-insight-source="prometheus"' in html and "Prometheus is not answering" in html
    assert all(one.insight is None for one in services.placement_live(placed).values())

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(4)  # accepts, never answers
    try:
        settings.SWITCHYARD_PROMETHEUS_URL = f"http://127.0.0.1:{hung.getsockname()[1]}"
        settings.SWITCHYARD_PROMETHEUS_TIMEOUT_SECONDS = 30.0  # the web path caps it anyway
        html, _, took = fragment(client, placed)
        assert took < 2.0 and "Prometheus is not answering" in html
    finally:
        hung.close()


def test_with_prometheus_the_sampler_reads_the_index_only(deployer, placed, settings, monkeypatch):
    calls = []
    monkeypatch.setattr(TritonClient, "index", lambda self: [{"name": MODEL, "version": "1", "state": "READY", "reason": None}])
    monkeypatch.setattr(TritonClient, "stats", lambda self, name, version=None: calls.append(name) or [])
    settings.SWITCHYARD_PROMETHEUS_URL = CLOSED
    services.placements_sample()
    assert calls == [] and all(s.stats is None and s.states for s in TargetSample.objects.all())
    settings.SWITCHYARD_PROMETHEUS_URL = ""
    services.placements_sample()
    # Both servers share one (closed) URL, so one job and one stats call.
    assert calls == [MODEL] and all(s.stats is not None for s in TargetSample.objects.all())
