"""Shadow traffic on the real fleet: copies are compared and counted, and a slow or failing shadow
never shows in the client's answers or latency.

Primaries serve version 1 from fleet-0; shadows run on fleet-1: version 1 again (agrees),
version 2 (its VERSION output differs: disagrees), version 3 (sleeps 200 ms) and version 4 (fails
every request).
"""
import statistics
import time

import numpy as np
import pytest
import tritonclient.http as triton_http

from tests.gateway.gateway_support import (
    INFER_BODY,
    Client,
    endpoint,
    load_model,
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

COMPARISONS = "switchyard_gateway_shadow_comparisons_total"
SHADOW_LIMIT = 4


@pytest.fixture(scope="module")
def model(triton_fleet, s3_client):
    name = unique("gws")
    upload_versions(s3_client, name, {1: {}, 2: {}, 3: {"latency_ms": 200}, 4: {"failure_rate": 1.0}})
    load_model([triton_fleet[0]], name, [1])
    load_model([triton_fleet[1]], name, [1, 2, 3, 4])
    for server, versions in ((triton_fleet[0], [1]), (triton_fleet[1], [1, 2])):
        warm = Client(server.http_url)  # a Python model's first request is slow; shadows should be warm
        for v in versions:
            assert warm.request("POST", f"/v2/models/{name}/versions/{v}/infer", INFER_BODY)[0] == 200
    yield name
    unload_model(triton_fleet, name)


@pytest.fixture(scope="module")
def gateway(model, triton_fleet, tmp_path_factory):
    def shadowed(name, shadow_name, shadow_version):
        shadow = None
        if shadow_name:
            shadow = {"variant": variant(shadow_name, shadow_version, 0, model, [2]), "percent": 100.0,
                      "rtol": 1e-5, "atol": 1e-6}
        return endpoint(name, [variant("stable", 1, 100, model, [1])], shadow=shadow)

    data = table(3, [server_entry(1, triton_fleet[0]), server_entry(2, triton_fleet[1])], [
        shadowed("team.plain", None, None),
        shadowed("team.same", "mirror", 1),
        shadowed("team.differs", "v2", 2),
        shadowed("team.slow", "slow", 3),
        shadowed("team.failing", "broken", 4),
    ])
    gw = start_gateway(tmp_path_factory.mktemp("gw-shadow"), table_data=data,
                       extra=["--shadow-limit", str(SHADOW_LIMIT)])
    yield gw
    gw.stop()


def test_gateway_shadow_comparisons_are_counted(gateway):
    client = Client(gateway.url)
    via = triton_http.InferenceServerClient(gateway.url.removeprefix("http://"), network_timeout=30)
    x = np.ones((2, 4), np.float32)

    def counts():
        text = gateway.metrics()
        return {(e, r): metric(text, COMPARISONS, endpoint=e, result=r)
                for e in ("team.same", "team.differs") for r in ("agree", "disagree", "error")}

    def dropped():
        return metric(gateway.metrics(), "switchyard_gateway_shadow_dropped_total")

    def settled(n):
        # Every copy is either compared or dropped (and counted as such).
        return sum(counts().values()) + dropped() - dropped_before == n

    dropped_before = dropped()
    assert sum(counts().values()) == 0
    sent = 0
    for i in range(30):
        for name in ("team.same", "team.differs"):
            if i % 2:  # binary tensors on both sides
                tensor = triton_http.InferInput("INPUT0", [2, 4], "FP32")
                tensor.set_data_from_numpy(x, binary_data=True)
                result = via.infer(name, [tensor], outputs=[triton_http.InferRequestedOutput("OUTPUT0", binary_data=True),
                                                           triton_http.InferRequestedOutput("VERSION", binary_data=True)])
                assert (result.as_numpy("VERSION") == 1).all()
            else:
                status, headers, _ = client.infer(name)
                assert status == 200 and headers["x-switchyard-variant"] == "stable"
            sent += 1
            # One copy at a time (a busy machine would otherwise fill the shadow limit and drop
            # some, which another test covers), so every copy must be compared.
            assert wait_until(lambda: settled(sent)), gateway.metrics()

    c = counts()
    assert dropped() == dropped_before
    # Each side agrees or disagrees as its version says, for JSON and binary answers alike.
    assert c[("team.same", "agree")] == 30 and c[("team.differs", "disagree")] == 30, c
    assert c[("team.same", "disagree")] == c[("team.same", "error")] == 0, c
    assert c[("team.differs", "agree")] == c[("team.differs", "error")] == 0, c
    text = gateway.metrics()
    assert metric(text, COMPARISONS, endpoint="team.same", variant="stable", shadow_variant="mirror") == 30
    assert metric(text, "switchyard_gateway_requests_total", endpoint="team.same", server="fleet-1") == 0


def test_gateway_slow_or_failing_shadow_changes_nothing_for_the_client(gateway):
    client = Client(gateway.url)
    latencies: dict[str, list[float]] = {"team.plain": [], "team.slow": [], "team.failing": []}
    bodies = {}
    for _ in range(120):
        for name, seen in latencies.items():  # interleaved, so machine noise hits all three alike
            started = time.perf_counter()
            status, headers, body = client.infer(name)
            seen.append(time.perf_counter() - started)
            assert status == 200 and headers["x-switchyard-variant"] == "stable"
            assert bodies.setdefault(name, body) == body
    assert bodies["team.slow"] == bodies["team.plain"] == bodies["team.failing"]
    p50 = {name: statistics.median(seen) for name, seen in latencies.items()}
    # The slow shadow takes 200 ms a copy; none of it may reach the client.
    assert p50["team.slow"] < p50["team.plain"] + 0.003, p50
    assert p50["team.failing"] < p50["team.plain"] + 0.003, p50

    def shadow_counts():
        text = gateway.metrics()
        return (metric(text, COMPARISONS, endpoint="team.failing", result="error"),
                metric(text, COMPARISONS, endpoint="team.slow"),
                metric(text, "switchyard_gateway_shadow_dropped_total"))

    # The failing shadow's copies count as errors; the slow one's pile up past the limit and are
    # dropped (120 copies at 200 ms each against 4 in flight).
    assert wait_until(lambda: shadow_counts()[0] >= 1 and shadow_counts()[1] >= 1, timeout=10)
    errors, slow_compared, dropped = shadow_counts()
    assert dropped >= 50, (errors, slow_compared, dropped)
    text = gateway.metrics()
    assert metric(text, COMPARISONS, endpoint="team.failing", result="agree") == 0
    assert metric(text, COMPARISONS, endpoint="team.slow", result="disagree") == slow_compared  # VERSION 3 vs 1
    assert metric(text, "switchyard_gateway_requests_total", code_class="5xx") == 0
