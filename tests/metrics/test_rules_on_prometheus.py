"""A real Prometheus discovers the real test fleet and a real gateway through Switchyard, scrapes
them, and the recording rules give the traffic's true rates; a Triton restart gives no negative
rate. Prometheus runs with 1 s intervals and the rules at a 10 s window (see conftest.py)."""
from __future__ import annotations

import time

import pytest
from django.utils import timezone

from controlplane.endpoints.models import GatewayReplica
from controlplane.fleet.models import Pool, Server
from tests.gateway.gateway_support import (
    INFER_BODY,
    endpoint,
    load_model,
    server_entry,
    start_gateway,
    table,
    unique,
    unload_model,
    upload_versions,
    variant,
)
from tests.metrics.conftest import WINDOW_S, Traffic, scalar, values, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = 'zone "a"} {b}\nc\\'
RATE = 20.0  # requests per second
FAILURE_RATE = 0.25


def target_up(prom, **labels) -> dict | None:
    """The active target with these labels, once its last scrape succeeded."""
    for t in prom.active_targets():
        if all(t["labels"].get(k) == v for k, v in labels.items()) and t["health"] == "up":
            return t
    return None


def test_prometheus_discovers_the_fleet_and_a_gateway_and_records_their_rates(
        prometheus, prometheus_token, triton_fleet, s3_client, tmp_path):
    name = unique("prom")
    upload_versions(s3_client, name, {1: {"failure_rate": FAILURE_RATE}})
    load_model(triton_fleet, name, [1])
    ep = f"prom.{name}"
    data = table(1, [server_entry(i + 1, t) for i, t in enumerate(triton_fleet)],
                 [endpoint(ep, [variant("stable", 1, 100, name, [1, 2])])])
    gateway = start_gateway(tmp_path, table_data=data)
    traffic = Traffic(f"{gateway.url}/v2/models/{ep}/infer", INFER_BODY, RATE)
    try:
        pool = Pool.objects.create(name="cpu-pool")
        for t in triton_fleet:
            Server.objects.create(name=t.name, pool=pool, http_url=t.http_url, metrics_url=t.metrics_url,
                                  labels={"zone": HOSTILE})
        GatewayReplica.objects.create(replica_id="pytest-gw/w0", address=gateway.url, last_seen_at=timezone.now())
        GatewayReplica.objects.create(replica_id="pytest-gw/w1", address=gateway.url, last_seen_at=timezone.now())

        for t in triton_fleet:
            found = wait_for(lambda t=t: target_up(prometheus, server=t.name), timeout=30, what=f"{t.name} scraped")
            assert found["labels"]["pool"] == "cpu-pool" and found["labels"]["job"] == "switchyard_triton"
            assert found["labels"]["label_zone"] == HOSTILE  # the hostile value arrives intact
            assert scalar(prometheus, f'up{{server="{t.name}", pool="cpu-pool", switchyard_kind="triton"}}') == 1
        wait_for(lambda: target_up(prometheus, replica="pytest-gw"), timeout=30, what="the gateway scraped")
        gateway_targets = [t for t in prometheus.active_targets() if t["labels"].get("replica") == "pytest-gw"]
        assert len(gateway_targets) == 1  # two workers, one address: one target
        assert scalar(prometheus, 'up{job="switchyard_gateway", replica="pytest-gw"}') == 1

        # A full window of steady traffic behind the scrapes, then the rules' view of it.
        wait_for(lambda: len(traffic.since(WINDOW_S + 3)) >= RATE * (WINDOW_S + 2) and
                 scalar(prometheus, f'count_over_time(up{{replica="pytest-gw"}}[{WINDOW_S + 2}s])') >= WINDOW_S,
                 timeout=60, what="a full window of traffic and scrapes")
        wait_for(lambda: scalar(prometheus, f'switchyard:gateway_requests:rate1m{{endpoint="{ep}"}}'),
                 timeout=10, what="the recorded request rate")
        statuses = traffic.since(WINDOW_S)
        sent_rate = len(statuses) / WINDOW_S
        failed = sum(1 for s in statuses if s >= 500) / len(statuses)
        assert all(s in (200, 500) for s in statuses), sorted(set(statuses))
        assert abs(failed - FAILURE_RATE) < 0.05

        sel = f'{{endpoint="{ep}", variant="stable", version="1"}}'
        requests = scalar(prometheus, f"switchyard:gateway_requests:rate1m{sel}")
        errors = scalar(prometheus, f"switchyard:gateway_errors:rate1m{sel}")
        ratio = scalar(prometheus, f"switchyard:gateway_error_ratio:rate1m{sel}")
        assert requests == pytest.approx(sent_rate, rel=0.2)
        assert errors == pytest.approx(sent_rate * FAILURE_RATE, rel=0.3)
        assert ratio == pytest.approx(FAILURE_RATE, abs=0.06)
        by_class = values(prometheus, f'switchyard:gateway_requests_by_class:rate1m{{endpoint="{ep}"}}')
        assert {dict(k)["code_class"] for k in by_class} == {"2xx", "5xx"}
        assert scalar(prometheus, "switchyard:fleet_requests:rate1m") >= requests * 0.9
        assert 0 < scalar(prometheus, "switchyard:fleet_error_ratio:rate1m") < 1
        for q in ("p50_1m", "p95_1m", "p99_1m"):
            latency = scalar(prometheus, f'switchyard:gateway_latency_seconds:{q}{{endpoint="{ep}", variant="stable"}}')
            assert 0 < latency < 1

        # Triton's side: both servers share the traffic; per server, model and version.
        inferences = values(prometheus, f'switchyard:triton_inferences:rate1m{{model="{name}"}}')
        assert {dict(k)["server"] for k in inferences} == {t.name for t in triton_fleet}
        assert all(dict(k)["version"] == "1" for k in inferences)
        # nv_inference_count counts the inferences that succeeded: a raise in execute() is not one.
        assert sum(inferences.values()) == pytest.approx(sent_rate * (1 - FAILURE_RATE), rel=0.2)
        triton_requests = sum(values(prometheus, f'switchyard:triton_requests:rate1m{{model="{name}"}}').values())
        triton_failures = sum(values(prometheus, f'switchyard:triton_failures:rate1m{{model="{name}"}}').values())
        assert triton_requests == pytest.approx(sent_rate, rel=0.2)
        assert triton_failures == pytest.approx(sent_rate * FAILURE_RATE, rel=0.35)  # a raise is a Triton failure
        # One request at a time, so batches of 1; but an execution that raised counts as an
        # execution and not as an inference, so the failure rate comes off.
        for batch in values(prometheus, f'switchyard:triton_batch_size:rate1m{{model="{name}"}}').values():
            assert batch == pytest.approx(1 - FAILURE_RATE, abs=0.15)
        for share in values(prometheus, f'switchyard:triton_queue_share:rate1m{{model="{name}"}}').values():
            assert 0 <= share < 1
        for q in ("p50", "p95", "p99"):
            per_server = values(prometheus, f'switchyard:triton_latency_us:{q}{{model="{name}"}}')
            assert {dict(k)["server"] for k in per_server} == {t.name for t in triton_fleet}
            assert all(v > 0 for v in per_server.values())
        # CPU servers report no GPU: absent, never a made-up 0.
        for gpu in ("switchyard:gpu_utilization", "switchyard:gpu_memory_used_bytes", "switchyard:gpu_memory_total_bytes"):
            assert prometheus.query(f'{gpu}{{server=~"{triton_fleet[0].name}|{triton_fleet[1].name}"}}') == []
    finally:
        traffic.stop()
        gateway.stop()
        unload_model(triton_fleet, name)


def test_a_triton_restart_gives_no_negative_rate_and_no_spike(prometheus, prometheus_token, disposable_triton, s3_client):
    name = unique("restart")
    upload_versions(s3_client, name, {1: {}})
    load_model([disposable_triton], name, [1])
    server_name = "disposable-restart"
    Server.objects.create(name=server_name, pool=Pool.objects.create(name="restart-pool"),
                          http_url=disposable_triton.http_url, metrics_url=disposable_triton.metrics_url)
    traffic = Traffic(f"{disposable_triton.http_url}/v2/models/{name}/infer", INFER_BODY, RATE)
    series = f'switchyard:triton_inferences:rate1m{{server="{server_name}", model="{name}"}}'
    try:
        wait_for(lambda: target_up(prometheus, server=server_name), timeout=30, what="the server scraped")
        wait_for(lambda: (scalar(prometheus, series) or 0) > RATE * 0.5, timeout=30, what="a rate before the restart")

        disposable_triton.restart()  # the counters start again from 0
        load_model([disposable_triton], name, [1])
        counter = f'nv_inference_count{{server="{server_name}", model="{name}"}}'
        wait_for(lambda: scalar(prometheus, f"resets({counter}[1m])"), timeout=30, what="Prometheus to see the reset")
        wait_for(lambda: (scalar(prometheus, series) or 0) > RATE * 0.5, timeout=30, what="a rate after the restart")
        # Through and after the reset: never below zero, never above what was sent.
        lowest = scalar(prometheus, f"min_over_time({series}[1m])")
        highest = scalar(prometheus, f"max_over_time({series}[1m])")
        assert lowest >= 0
        assert highest <= RATE * 1.3
        assert (scalar(prometheus, f"min_over_time(switchyard:triton_requests:rate1m{{server=\"{server_name}\"}}[1m])")
                or 0) >= 0

        # Removed from Switchyard: dropped at a discovery refresh, with no config edit.
        Server.objects.filter(name=server_name).delete()
        removed_at = time.monotonic()
        wait_for(lambda: not any(t["labels"].get("server") == server_name for t in prometheus.active_targets()),
                 timeout=20, what="the removed server to be dropped")
        print(f"removed server dropped after {time.monotonic() - removed_at:.1f} s")
    finally:
        traffic.stop()
