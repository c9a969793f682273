"""End to end on real parts: API upload to S3 (moto), load on a real tritonserver through the
client module, and the prober's record of it."""
import io

import numpy as np
import pytest
import tritonclient.http as triton_http

from controlplane.devstack.testmodels import TEST_MODEL_OUTPUTS, python_model_files
from controlplane.fleet.models import Pool, Server, ServerStatus
from controlplane.fleet.services import fleet_probe
from controlplane.fleet.triton_client import TritonClient
from controlplane.serving.render import render_model_config

pytestmark = pytest.mark.integration


def _upload(name, data):
    f = io.BytesIO(data)
    f.name = name
    return f


@pytest.fixture
def registered_fleet(db, triton_fleet):
    pool = Pool.objects.create(name="cpu")
    return [
        Server.objects.create(name=f"triton-{i}", pool=pool, http_url=t.http_url, grpc_url=t.grpc_url, metrics_url=t.metrics_url)
        for i, t in enumerate(triton_fleet)
    ]


def test_uploaded_version_loads_on_real_triton_and_prober_sees_it_ready(api, deployer, s3, registered_fleet, model_payload):
    client = api(deployer)
    model = client.post("/api/v1/models/", model_payload(outputs=TEST_MODEL_OUTPUTS), format="json").json()
    files = python_model_files(version=1)
    response = client.post(f"/api/v1/models/{model['id']}/versions/", {"version": 1, "files": [_upload("model.py", files["model.py"])]})
    assert response.status_code == 201, response.json()

    from controlplane.registry.models import Model

    config = render_model_config(Model.objects.get(pk=model["id"]), None, versions=[1])
    server = registered_fleet[0]
    triton = TritonClient(server.http_url)
    triton.load(model["triton_name"], config=config)
    try:
        assert triton.model_ready(model["triton_name"], 1)
        assert fleet_probe() == {ServerStatus.UP: len(registered_fleet)}
        server.refresh_from_db()
        entry = next(e for e in server.repository_index if e["name"] == "vision.fraud-scorer")
        assert (entry["version"], entry["state"]) == ("1", "READY")
        assert server.triton_version and "model_repository" in server.extensions
        other = Server.objects.get(pk=registered_fleet[1].pk)
        assert all(e.get("state") != "READY" for e in other.repository_index if e["name"] == "vision.fraud-scorer")

        infer = triton_http.InferenceServerClient(server.http_url.removeprefix("http://"))
        data = np.arange(4, dtype=np.float32).reshape(1, 4)
        request = triton_http.InferInput("INPUT0", data.shape, "FP32")
        request.set_data_from_numpy(data)
        result = infer.infer(model["triton_name"], [request])
        assert result.as_numpy("OUTPUT0").tolist() == (data * 2).tolist()
        assert result.as_numpy("VERSION").ravel().tolist() == [1]
        infer.close()
    finally:
        triton.unload(model["triton_name"])


def test_prober_reports_a_stopped_server_down_and_back_up(db, disposable_triton):
    from controlplane.audit.models import AuditEvent

    pool = Pool.objects.create(name="cpu")
    server = Server.objects.create(name="disposable", pool=pool, http_url=disposable_triton.http_url)
    fleet_probe()
    server.refresh_from_db()
    assert server.status == ServerStatus.UP and server.last_seen_at is not None and server.last_error == ""

    disposable_triton.stop()
    fleet_probe()
    server.refresh_from_db()
    assert server.status == ServerStatus.DOWN and server.is_live is None
    assert "could not" in server.last_error.lower() or "refused" in server.last_error.lower(), server.last_error
    down = AuditEvent.objects.get(action="server.down")
    assert (down.before, down.after, down.object_repr) == ({"status": "up"}, {"status": "down"}, "disposable")
    assert down.actor_name in ("worker", "system", "schedule") and down.reason == server.last_error

    disposable_triton.start()
    fleet_probe()
    server.refresh_from_db()
    assert server.status == ServerStatus.UP
    fleet_probe()  # no change of status, no new event
    transitions = list(AuditEvent.objects.order_by("id").values_list("action", "before__status", "after__status"))
    assert transitions == [
        ("server.up", "unknown", "up"),
        ("server.down", "up", "down"),
        ("server.up", "down", "up"),
    ]


def test_probe_now_endpoint_is_for_platform_admins(api, platform_admin, deployer, registered_fleet):
    server = registered_fleet[0]
    assert api(deployer).post(f"/api/v1/servers/{server.pk}/probe/").status_code == 403
    server.refresh_from_db()
    assert server.status == ServerStatus.UNKNOWN
    response = api(platform_admin).post(f"/api/v1/servers/{server.pk}/probe/")
    assert response.status_code == 200
    assert response.json()["status"] == "up" and response.json()["triton_version"]
