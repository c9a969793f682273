"""`make demo` seeds through the real services; run that seed on real parts so the demo cannot rot."""
import io
import threading
import time

import numpy as np
import pytest
import tritonclient.http as triton_http
from django.core.management import call_command

from controlplane.audit.selectors import audit_chain_verify
from controlplane.devstack import free_ports
from controlplane.devstack.loadgen import LoadGenerator
from controlplane.endpoints.models import RoutingTableState
from controlplane.fleet.models import Server, ServerStatus
from controlplane.placements.models import PlacementTarget
from controlplane.registry.models import ModelVersion, VersionLabel
from tests.gateway.gateway_support import load_model, start_gateway

pytestmark = pytest.mark.integration


def test_seed_demo_loads_a_placement_on_a_real_triton(db, s3, disposable_triton, tmp_path, django_capture_on_commit_callbacks):
    t = disposable_triton
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # the demo runs in autocommit: publish as it would
        call_command("seed_demo", "--servers", f"triton-1={t.http_url}|{t.grpc_url}|{t.metrics_url}", "--password", "pw", stdout=out)
    assert "1 placement, 1 endpoint" in out.getvalue()
    assert ModelVersion.objects.count() == 6
    # As the README says: stable is v2, canary the faster v3; v4 is the deliberately bad one.
    assert dict(VersionLabel.objects.values_list("name", "version__version")) == {"stable": 2, "canary": 3}
    fraud = {v.version: v.metadata for v in ModelVersion.objects.filter(model__name="fraud-scorer")}
    assert sorted(fraud) == [1, 2, 3, 4]
    assert fraud[3]["latency_ms"] < fraud[2]["latency_ms"]
    assert fraud[4]["failure_rate"] == 0.5 and not fraud[3].get("failure_rate")
    target = PlacementTarget.objects.get()
    assert (target.server_name, target.state) == ("triton-1", "ready")
    server = Server.objects.get(name="triton-1")
    assert server.status == ServerStatus.UP
    loaded = {(e["name"], e["version"], e["state"]) for e in server.repository_index}
    assert ("vision.fraud-scorer", "2", "READY") in loaded
    assert audit_chain_verify().ok

    # The table the demo's gateway gets: vision.fraud-scorer follows stable (v2) on triton-1, and
    # the README's tritonclient one-liner works through a real gateway serving it.
    table = RoutingTableState.objects.get(pk=1).body
    (endpoint,) = table["endpoints"]
    assert (endpoint["name"], endpoint["access"], endpoint["sticky"]) == ("vision.fraud-scorer", "open", {"header": "X-User-Id"})
    assert [(v["name"], v["version"], v["servers"]) for v in endpoint["variants"]] == [("stable", 2, [server.pk])]
    gateway = start_gateway(tmp_path, table_data=table)
    try:
        client = triton_http.InferenceServerClient(gateway.url.removeprefix("http://"))
        tensor = triton_http.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([[1, 2, 3, 4]], dtype=np.float32))
        result = client.infer("vision.fraud-scorer", [tensor])
        assert result.as_numpy("OUTPUT0").tolist() == [[2.0, 4.0, 6.0, 8.0]]
        assert result.as_numpy("VERSION").tolist() == [[2]]
        client.close()

        # The demo's load generator gets answers from v2 through that gateway, at its pace.
        generator = LoadGenerator(gateway.url, "vision.fraud-scorer", rate=40, seed=1)
        stop = threading.Event()
        runner = threading.Thread(target=generator.run, args=(stop,))
        runner.start()
        time.sleep(1.5)
        stop.set()
        runner.join(10)
        assert not runner.is_alive()
        answered = dict(generator.total.counts)
        assert set(answered) == {"v2"} and 30 <= answered["v2"] <= 70, answered
    finally:
        gateway.stop()

    # v3 and the bad v4 are in S3 where Triton loads them: v3 answers, v4 fails every second request.
    load_model([t], "vision.fraud-scorer", [2, 3, 4])
    client = triton_http.InferenceServerClient(t.http_url.removeprefix("http://"))
    tensor = triton_http.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    assert client.infer("vision.fraud-scorer", [tensor], model_version="3").as_numpy("VERSION").tolist() == [[3]]
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(int(client.infer("vision.fraud-scorer", [tensor], model_version="4").as_numpy("VERSION")[0][0]))
        except triton_http.InferenceServerException as e:
            outcomes.append("injected failure (version 4" in str(e))
    client.close()
    assert outcomes == [4, True, 4, True]


def test_the_load_generator_keeps_going_quietly_while_no_gateway_answers():
    """A gateway restarting or gone: each request is counted as no answer, nothing raises, and it
    backs off (no tight loop against a closed port), up to 2 s between tries."""
    generator = LoadGenerator(f"http://127.0.0.1:{free_ports(1)[0]}", "vision.fraud-scorer", rate=1000, timeout=1)
    outcomes = [generator.send_one() for _ in range(8)]
    assert outcomes == ["no answer"] * 8
    assert 0 < generator.backoff_s() <= 2.0
    stop = threading.Event()
    runner = threading.Thread(target=generator.run, args=(stop,))
    runner.start()
    time.sleep(1.0)
    stop.set()
    runner.join(5)
    assert not runner.is_alive()
    # At 1,000 requests/s it would have sent hundreds; backing off, a handful.
    assert sum(generator.total.counts.values()) < 8 + 10
