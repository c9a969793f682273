"""`make demo` seeds through the real services; run that seed on real parts so the demo cannot rot."""
import io

import numpy as np
import pytest
import tritonclient.http as triton_http
from django.core.management import call_command

from controlplane.audit.selectors import audit_chain_verify
from controlplane.endpoints.models import RoutingTableState
from controlplane.fleet.models import Server, ServerStatus
from controlplane.placements.models import PlacementTarget
from controlplane.registry.models import ModelVersion, VersionLabel
from tests.gateway.gateway_support import start_gateway

pytestmark = pytest.mark.integration


def test_seed_demo_loads_a_placement_on_a_real_triton(db, s3, disposable_triton, tmp_path, django_capture_on_commit_callbacks):
    t = disposable_triton
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # the demo runs in autocommit: publish as it would
        call_command("seed_demo", "--servers", f"triton-1={t.http_url}|{t.grpc_url}|{t.metrics_url}", "--password", "pw", stdout=out)
    assert "1 placement, 1 endpoint" in out.getvalue()
    assert ModelVersion.objects.count() == 5
    assert dict(VersionLabel.objects.values_list("name", "version__version")) == {"stable": 2, "canary": 3}
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
    finally:
        gateway.stop()
