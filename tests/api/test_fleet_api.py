import pytest

from controlplane.audit.models import AuditEvent
from controlplane.fleet.models import Pool, Server


@pytest.fixture
def pool(db):
    return Pool.objects.create(name="gpu-a100")


def server_payload(**overrides):
    payload = {
        "name": "triton-1",
        "pool": "gpu-a100",
        "http_url": "http://127.0.0.1:1",
        "grpc_url": "127.0.0.1:2",
        "metrics_url": "http://127.0.0.1:3/metrics",
        "gpu_type": "A100",
        "gpu_count": 4,
        "labels": {"zone": "eu-1a"},
    }
    payload.update(overrides)
    return payload


def test_platform_admin_registers_a_server(api, platform_admin, pool, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(platform_admin).post("/api/v1/servers/", server_payload(), format="json")
    assert response.status_code == 201, response.json()
    server = Server.objects.get(name="triton-1")
    assert (server.gpu_count, server.labels, server.status) == (4, {"zone": "eu-1a"}, "unknown")
    assert AuditEvent.objects.get(action="server.register").after["http_url"] == "http://127.0.0.1:1"
    assert len(callbacks) == 1  # a first probe is queued once the row is committed


@pytest.mark.parametrize("user_fixture", ["deployer", "viewer", "outsider"])
def test_only_platform_admins_register_servers(api, request, pool, user_fixture):
    response = api(request.getfixturevalue(user_fixture)).post("/api/v1/servers/", server_payload(), format="json")
    assert response.status_code == 403
    assert not Server.objects.exists()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"http_url": "file:///etc/passwd"}, "http_url"),
        ({"http_url": "gopher://triton:70"}, "http_url"),
        ({"metrics_url": "file:///metrics"}, "metrics_url"),
        ({"grpc_url": "grpc://triton:8001"}, "grpc_url"),
        ({"name": "Triton 1"}, "name"),
        ({"gpu_count": -1}, "gpu_count"),
        ({"pool": "nope"}, "pool"),
        ({"labels": {"Zone": "x"}}, "labels"),
    ],
)
def test_bad_servers_are_400(api, platform_admin, pool, overrides, field):
    response = api(platform_admin).post("/api/v1/servers/", server_payload(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"]
    assert not Server.objects.exists() and not AuditEvent.objects.exists()


def test_duplicate_server_is_409(api, platform_admin, pool):
    client = api(platform_admin)
    assert client.post("/api/v1/servers/", server_payload(), format="json").status_code == 201
    response = client.post("/api/v1/servers/", server_payload(), format="json")
    assert response.status_code == 409 and "name" in response.json()["fields"]


def test_update_and_remove_are_audited(api, platform_admin, pool):
    client = api(platform_admin)
    server_id = client.post("/api/v1/servers/", server_payload(), format="json").json()["id"]
    response = client.patch(f"/api/v1/servers/{server_id}/", {"gpu_count": 8}, format="json")
    assert response.status_code == 200 and response.json()["gpu_count"] == 8
    event = AuditEvent.objects.get(action="server.update")
    assert (event.before["gpu_count"], event.after["gpu_count"]) == (4, 8)
    assert client.patch(f"/api/v1/servers/{server_id}/", {"http_url": "gopher://x:1"}, format="json").status_code == 400
    assert Server.objects.get(pk=server_id).http_url == "http://127.0.0.1:1"
    assert client.delete(f"/api/v1/servers/{server_id}/").status_code == 204
    assert not Server.objects.exists() and AuditEvent.objects.filter(action="server.remove").exists()


def test_renaming_onto_a_taken_name_is_409_and_an_unchanged_edit_writes_nothing(api, platform_admin, pool):
    client = api(platform_admin)
    Pool.objects.create(name="cpu")
    one = client.post("/api/v1/servers/", server_payload(), format="json").json()["id"]
    client.post("/api/v1/servers/", server_payload(name="triton-2"), format="json")
    events = AuditEvent.objects.count()
    clash = client.patch(f"/api/v1/servers/{one}/", {"name": "triton-2"}, format="json")
    assert clash.status_code == 409 and "triton-2" in clash.json()["fields"]["name"][0]
    pool_clash = client.patch("/api/v1/pools/gpu-a100/", {"name": "cpu"}, format="json")
    assert pool_clash.status_code == 409 and "cpu" in pool_clash.json()["fields"]["name"][0]
    assert client.patch(f"/api/v1/servers/{one}/", {"gpu_count": 4}, format="json").status_code == 200
    assert AuditEvent.objects.count() == events
    assert Server.objects.get(pk=one).name == "triton-1" and Pool.objects.filter(name="gpu-a100").exists()


def test_pools(api, platform_admin, deployer, pool):
    client = api(platform_admin)
    assert client.post("/api/v1/pools/", {"name": "cpu"}, format="json").status_code == 201
    assert client.post("/api/v1/pools/", {"name": "cpu"}, format="json").status_code == 409
    assert client.post("/api/v1/pools/", {"name": "CPU pool"}, format="json").status_code == 400
    assert api(deployer).post("/api/v1/pools/", {"name": "mine"}, format="json").status_code == 403
    client.post("/api/v1/servers/", server_payload(), format="json")
    response = client.delete("/api/v1/pools/gpu-a100/")
    assert response.status_code == 409 and "servers" in response.json()["detail"]
    assert client.delete("/api/v1/pools/cpu/").status_code == 204
    listed = {p["name"]: p["server_count"] for p in api(deployer).get("/api/v1/pools/").json()["results"]}
    assert listed == {"gpu-a100": 1}


def test_malformed_json_server(api, platform_admin, pool):
    response = api(platform_admin).post("/api/v1/servers/", data="{", content_type="application/json")
    assert response.status_code == 400 and "body" in response.json()["fields"]


def test_openapi_schema_and_offline_docs(api, deployer):
    client = api(deployer)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/models/", "/api/v1/models/{model_pk}/versions/", "/api/v1/servers/", "/api/v1/pools/", "/api/v1/teams/"} <= set(paths)
    docs = client.get("/api/docs/")
    html = docs.content.decode()
    assert docs.status_code == 200 and "swagger-ui" in html
    assert "cdn" not in html.lower() and "https://" not in html
