"""Known traffic for the chart tests: a pinned endpoint with a blue and a green variant, served by
a real gateway in front of the real test fleet, both scraped by the session's real Prometheus
(tests/metrics/conftest.py). Green fails half its requests. Not a test module."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from django.utils import timezone

from controlplane.endpoints.models import (
    Endpoint,
    EndpointKind,
    EndpointVariant,
    GatewayReplica,
)
from controlplane.fleet.models import Pool, Server
from controlplane.registry.models import Model
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
from tests.metrics.conftest import WINDOW_S, Traffic, wait_for
from tests.quotas.conftest import make_model, make_version

RATE = 16.0  # requests per second, shared 50/50 by blue and green
GREEN_FAILURES = 0.5
CHART_STEP = 5  # the 15-minute chart's step


@dataclass
class ChartTraffic:
    endpoint: Endpoint
    model: Model
    servers: list[Server]
    traffic: Traffic

    def sent_rate(self) -> float:
        return len(self.traffic.since(WINDOW_S)) / WINDOW_S


@contextlib.contextmanager
def chart_traffic(prometheus, team, triton_fleet, s3_client, tmp_path):
    name = unique("chart")
    model = make_model(team, name)
    triton_name = model.triton_name
    upload_versions(s3_client, triton_name, {1: {}, 2: {"failure_rate": GREEN_FAILURES}})
    load_model(triton_fleet, triton_name, [1, 2])
    blue, green = make_version(model, 1), make_version(model, 2)
    ep = Endpoint.objects.create(team=team, name=name, model=model, kind=EndpointKind.PINNED, access="open")
    EndpointVariant.objects.create(endpoint=ep, name="blue", version=blue, weight=50, position=0)
    EndpointVariant.objects.create(endpoint=ep, name="green", version=green, weight=50, position=1)
    pool, _ = Pool.objects.get_or_create(name="chart-pool")
    servers = [Server.objects.create(name=t.name, pool=pool, http_url=t.http_url, metrics_url=t.metrics_url)
               for t in triton_fleet]
    ids = [i + 1 for i in range(len(triton_fleet))]
    data = table(1, [server_entry(i, t) for i, t in zip(ids, triton_fleet)],
                 [endpoint(ep.public_name, [variant("blue", 1, 50, triton_name, ids),
                                            variant("green", 2, 50, triton_name, ids)])])
    gateway = start_gateway(tmp_path, table_data=data)
    replica = unique("chart-gw")
    GatewayReplica.objects.create(replica_id=f"{replica}/w0", address=gateway.url, last_seen_at=timezone.now())
    traffic = Traffic(f"{gateway.url}/v2/models/{ep.public_name}/infer", INFER_BODY, RATE)
    try:
        # A full window of traffic behind the scrapes of the gateway and of every server, then
        # both variants recorded on both sides.
        scraped = " and ".join(
            [f'count_over_time(up{{replica="{replica}"}}[{WINDOW_S + 2}s]) >= {WINDOW_S}']
            + [f'count_over_time(up{{server="{s.name}", switchyard_kind="triton"}}[{WINDOW_S + 2}s]) >= {WINDOW_S}'
               for s in servers])
        sel = f'{{endpoint="{ep.public_name}"}}'
        # A rate is exact once its series has a full window behind it; a chart's last point may
        # lie one step (5 s) before now, so that point needs a full window too.
        settled = WINDOW_S + CHART_STEP + 1
        wait_for(lambda: len(traffic.since(WINDOW_S + 2)) >= RATE * (WINDOW_S + 1)
                 and all(prometheus.query(part) for part in scraped.split(" and "))
                 and len(prometheus.query(f"count_over_time(switchyard:gateway_requests:rate1m{sel}[{settled}s]) >= {settled - 1}")) == 2
                 and len(prometheus.query(f'count_over_time(switchyard:triton_inferences:rate1m{{model="{triton_name}"}}[{settled}s])'
                                          f' >= {settled - 1}')) >= 2,
                 timeout=60, what="a full window of traffic scraped and recorded")
        yield ChartTraffic(endpoint=ep, model=model, servers=servers, traffic=traffic)
    finally:
        traffic.stop()
        gateway.stop()
        unload_model(triton_fleet, triton_name)
