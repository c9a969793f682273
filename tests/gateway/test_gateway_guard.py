"""The data-plane guard on a real fleet: a green that fails every request is cut off by the gateway
itself after `min_requests` answers, and the trip reaches the control plane's report endpoint.

One gateway subprocess (one worker) polls a stand-in control plane (tests/gateway/gateway_support.py's
TableServer: the table with an ETag, and the replica reports) every 0.1 s. The test model's version 2
(green) fails every request (failure_rate 1.0: Triton answers 500), version 1 (blue) never does; both
are loaded side by side on both fleet servers. The assertions count answers, never time.
"""
import hashlib
import json

import pytest

from gateway.routing import BUCKETS, bucket_of
from tests.gateway.gateway_support import (
    Client,
    TableServer,
    endpoint,
    load_model,
    many,
    metric,
    server_entry,
    start_gateway,
    table,
    unique,
    unload_model,
    upload_versions,
    variant,
    wait_until,
)

pytestmark = pytest.mark.integration

EP = "team.guarded"
MIN_REQUESTS = 10
THREADS = 8
DEPLOY_TOKEN = "sy_team_deploy"


def guard(min_requests=MIN_REQUESTS):
    return {"max_error_ratio": 0.05, "min_requests": min_requests, "window_s": 30}


@pytest.fixture(scope="module")
def model(triton_fleet, s3_client):
    name = unique("gwguard")
    # error_response, not raise: a stub that raises on every request was once left UNLOADING on a
    # shared fleet server (so not ready) after this module, failing later tests there.
    upload_versions(s3_client, name, {1: {}, 2: {"failure_rate": 1.0, "failure_mode": "error_response"}})
    load_model(triton_fleet, name, [1, 2])
    yield name
    unload_model(triton_fleet, name)


class Tables:
    def __init__(self, model, fleet):
        self.model = model
        self.servers = [server_entry(1, fleet[0]), server_entry(2, fleet[1])]
        self.version = 0

    def make(self, green_guard, *, extra_endpoint=False):
        """green (v2, failing) at 50% first, then blue (v1) at 50%, as a rollout publishes them."""
        self.version += 1
        m, both = self.model, [1, 2]
        endpoints = [endpoint(EP, [variant("green", 2, 50, m, both, guard=green_guard),
                                   variant("blue", 1, 50, m, both)],
                              sticky={"header": "X-User-Id"}, labels={"blue": 1, "green": 2})]
        if extra_endpoint:
            endpoints.append(endpoint("team.other", [variant("stable", 1, 100, m, both)]))
        tokens = [{"team": "team", "sha256": hashlib.sha256(DEPLOY_TOKEN.encode()).hexdigest(),
                   "scopes": ["infer", "deploy"], "expires_at": None}]
        return table(self.version, self.servers, endpoints, tokens=tokens)


@pytest.fixture(scope="module")
def setup(model, triton_fleet, tmp_path_factory):
    tables = Tables(model, triton_fleet)
    server = TableServer(tables.make(guard()))
    gw = start_gateway(tmp_path_factory.mktemp("gw-guard"), control_plane=server.url)
    assert wait_until(lambda: table_version(gw) == 1, timeout=10)
    yield tables, server, gw
    gw.stop()
    server.stop()


def table_version(gw) -> float:
    return metric(gw.metrics(), "switchyard_gateway_table_version")


def tripped(gw) -> float:
    return metric(gw.metrics(), "switchyard_gateway_guard_tripped", endpoint=EP, variant="green")


def publish(server, gw, data):
    server.set(data)
    assert wait_until(lambda: table_version(gw) == data["version"], timeout=10)


def answers(gw, count, *, users=None, threads=THREADS):
    """`count` inference answers through the gateway as (status, variant), `threads` at a time;
    with `users`, request i carries the sticky header of users[i % len(users)]."""
    def one(client, i):
        headers = {"X-User-Id": users[i % len(users)]} if users else None
        status, response_headers, _ = client.infer(EP, headers=headers)
        return status, response_headers.get("x-switchyard-variant")

    return many(gw.url, count, one, threads=threads)


def trips_reported(server, **match):
    return [t for r in server.reports.values() for t in r.get("trips", [])
            if all(t[k] == v for k, v in match.items())]


def test_gateway_guard_cuts_a_failing_green_off_after_min_requests_and_reports_it(setup):
    tables, server, gw = setup
    green_users = [u for u in (f"user-{i}" for i in range(400)) if bucket_of(u) < BUCKETS // 2][:50]

    # Before the trip: green gets about half of the traffic and fails every time.
    first = answers(gw, 200)
    assert wait_until(lambda: tripped(gw) == 1, timeout=10)
    failed = [a for a in first if a[0] != 200]
    assert all(a == (500, "green") for a in failed), set(failed)
    assert {a for a in first if a[0] == 200} <= {(200, "blue")}
    # Bounded: the guard's min_requests, plus at most what was in flight when it tripped.
    assert MIN_REQUESTS <= len(failed) <= MIN_REQUESTS + THREADS, len(failed)

    # After it: every weighted answer comes from blue, and so does every sticky user of green.
    after = answers(gw, 300) + answers(gw, 200, users=green_users)
    assert set(after) == {(200, "blue")}

    # A deployer's explicit variant, or the version asked by number, still reaches green.
    client = Client(gw.url)
    status, headers, _ = client.infer(EP, headers={"X-Switchyard-Variant": "green",
                                                   "Authorization": f"Bearer {DEPLOY_TOKEN}"})
    assert (status, headers["x-switchyard-variant"]) == (500, "green")
    status, headers, _ = client.infer(EP, version="2")
    assert (status, headers["x-switchyard-variant"]) == (500, "green")

    # The trip reaches the control plane's report endpoint, counted as it was when it tripped.
    assert wait_until(lambda: trips_reported(server, endpoint=EP, variant="green", version=2), timeout=10)
    [trip] = trips_reported(server, endpoint=EP)
    assert set(trip) == {"endpoint", "variant", "version", "errors", "requests", "error_ratio", "tripped_at"}
    assert trip["errors"] == trip["requests"] == MIN_REQUESTS and trip["error_ratio"] == 1.0
    [report] = [r for r in server.reports.values() if r["trips"]]
    assert report["replica_id"].endswith("/w0") and report["table_version"] == 1
    text = gw.metrics()
    assert metric(text, "switchyard_gateway_guard_trips_total", endpoint=EP, variant="green") == 1
    assert metric(text, "switchyard_gateway_requests_total", endpoint=EP, variant="green",
                  code_class="5xx") == len(failed) + 2

    # A new table that keeps green's guard (an unrelated change) keeps the trip.
    publish(server, gw, tables.make(guard(), extra_endpoint=True))
    assert tripped(gw) == 1
    assert set(answers(gw, 100)) == {(200, "blue")}

    # A new table with a different guard (a retried deployment) starts clean: green takes traffic
    # again, and trips again after the new guard's min_requests.
    publish(server, gw, tables.make(guard(min_requests=MIN_REQUESTS + 1)))
    assert tripped(gw) == 0
    assert trips_reported(server, endpoint=EP) == [] or wait_until(
        lambda: trips_reported(server, endpoint=EP) == [], timeout=10)  # the next report has none
    retried = answers(gw, 200, threads=1)  # one at a time: exactly min_requests fail
    assert [a for a in retried if a[0] != 200] == [(500, "green")] * (MIN_REQUESTS + 1)
    assert tripped(gw) == 1
    last_failure = max(i for i, a in enumerate(retried) if a[0] != 200)
    assert set(retried[last_failure + 1:]) == {(200, "blue")}
    assert wait_until(lambda: trips_reported(server, endpoint=EP, requests=MIN_REQUESTS + 1), timeout=10)
    assert metric(gw.metrics(), "switchyard_gateway_guard_trips_total", endpoint=EP, variant="green") == 2
    json.dumps(server.reports)  # plain JSON all the way
