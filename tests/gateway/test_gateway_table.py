"""Table changes as the gateway sees them: it polls a stand-in control plane (a tiny HTTP server
with the table and the replica-report endpoints) every 0.1 s.

A switch under continuous load loses no request, sticky users keep their variant while the
canary grows, and a control-plane outage loses no request while table_source_up says 0.
"""
import json
import time

import pytest

from tests.gateway.gateway_support import (
    LoadLoop,
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


@pytest.fixture(scope="module")
def model(triton_fleet, s3_client):
    name = unique("gwtab")
    upload_versions(s3_client, name, {1: {}, 2: {}})
    load_model(triton_fleet, name, [1, 2])
    yield name
    unload_model(triton_fleet, name)


class Tables:
    """Builds the module's tables: `sticky` has a canary at `canary_weight`%, `flip` serves one
    variant (`blue` v1 or `green` v2)."""

    def __init__(self, model, fleet):
        self.model = model
        self.servers = [server_entry(1, fleet[0]), server_entry(2, fleet[1])]
        self.version = 0

    def make(self, *, canary_weight=5, flip="blue"):
        self.version += 1
        m, both = self.model, [1, 2]
        flip_variant = variant("blue", 1, 100, m, both) if flip == "blue" else variant("green", 2, 100, m, both)
        return table(self.version, self.servers, [
            endpoint("team.sticky", [variant("canary", 2, canary_weight, m, both),
                                     variant("stable", 1, 100 - canary_weight, m, both)],
                     sticky={"header": "X-User-Id"}, labels={"stable": 1, "canary": 2}),
            endpoint("team.flip", [flip_variant]),
        ])


@pytest.fixture(scope="module")
def setup(model, triton_fleet, tmp_path_factory):
    tables = Tables(model, triton_fleet)
    server = TableServer(tables.make())
    gw = start_gateway(tmp_path_factory.mktemp("gw-table"), control_plane=server.url)
    yield tables, server, gw
    gw.stop()
    server.stop()


def table_version(gw) -> float:
    return metric(gw.metrics(), "switchyard_gateway_table_version")


def publish(server, gw, data):
    server.set(data)
    assert wait_until(lambda: table_version(gw) == data["version"], timeout=10)


def test_gateway_sticky_users_keep_their_variant_as_the_canary_grows(setup):
    tables, server, gw = setup
    publish(server, gw, tables.make(canary_weight=5))
    users = [f"user-{i}" for i in range(1000)]

    def variants_of_users():
        seen = many(gw.url, 2 * len(users), lambda c, i: (
            users[i % len(users)], c.get("/v2/models/team.sticky/ready", {"X-User-Id": users[i % len(users)]})[1][
                "x-switchyard-variant"]), threads=8)
        by_user: dict[str, set] = {}
        for user, seen_variant in seen:
            by_user.setdefault(user, set()).add(seen_variant)
        assert all(len(v) == 1 for v in by_user.values()), "a user saw two variants under one table"
        return {u for u, v in by_user.items() if v == {"canary"}}

    at_5 = variants_of_users()
    assert 20 <= len(at_5) <= 85, len(at_5)  # 5% of 1000 users, about +-5 sigma

    publish(server, gw, tables.make(canary_weight=25))
    at_25 = variants_of_users()
    assert at_5 <= at_25, "a canary user fell back to stable when the canary grew"
    assert 170 <= len(at_25) <= 330, len(at_25)


def test_gateway_table_switch_under_load_loses_no_request(setup):
    tables, server, gw = setup
    publish(server, gw, tables.make(flip="blue"))
    loop = LoadLoop(gw.url, lambda c: c.infer("team.flip"), threads=4)
    try:
        assert wait_until(lambda: len(loop.results) >= 100, timeout=20)
        switched_at = time.monotonic()
        server.set(tables.make(flip="green"))
        assert wait_until(lambda: any(h.get("x-switchyard-variant") == "green" for *_, h, _ in loop.results[-20:]),
                          timeout=10)
        green_at = time.monotonic()
        assert wait_until(lambda: loop.count_since(green_at + 0.3) >= 100, timeout=20)
    finally:
        loop.stop()
    assert loop.failures() == []
    assert green_at - switched_at < 2.0  # polled every 0.1 s
    after = [(h["x-switchyard-variant"], json.loads(b)["model_version"]) for t, _, h, b in loop.results
             if t > green_at + 0.3]
    assert after and set(after) == {("green", "2")}
    assert {h["x-switchyard-variant"] for t, _, h, _ in loop.results if t < switched_at} == {"blue"}


def test_gateway_control_plane_outage_loses_no_request(setup):
    tables, server, gw = setup
    loop = LoadLoop(gw.url, lambda c: c.infer("team.flip"), threads=2)
    try:
        assert wait_until(lambda: len(loop.results) >= 50, timeout=20)
        assert metric(gw.metrics(), "switchyard_gateway_table_source_up") == 1
        server.stop()
        down_at = time.monotonic()
        assert wait_until(lambda: metric(gw.metrics(), "switchyard_gateway_table_source_up") == 0, timeout=10)
        assert wait_until(lambda: loop.count_since(down_at) >= 200, timeout=20)
        text = gw.metrics()
        assert metric(text, "switchyard_gateway_table_version") == tables.version  # the last good table
        assert metric(text, "switchyard_gateway_table_age_seconds") > 0
        server.start()
        assert wait_until(lambda: metric(gw.metrics(), "switchyard_gateway_table_source_up") == 1, timeout=10)
    finally:
        loop.stop()
    assert loop.failures() == []
    # The replica reported in while the control plane was up, as <replica-id>/w0.
    assert any(rid.endswith("/w0") and r["table_version"] == tables.version for rid, r in server.reports.items())
