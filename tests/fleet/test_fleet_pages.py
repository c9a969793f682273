"""The fleet's pages and admin forms through Django's test client: what each person sees, where a
refusal lands, and that the server page's query count does not grow with the data."""
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.fleet import services
from controlplane.fleet.models import Pool, Server
from controlplane.placements.services import placement_create
from tests.conftest import _user
from tests.quotas.conftest import make_model, make_version


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def speech_placed(other_team, server):
    """speech/secret-asr placed on the same server as vision's model."""
    model = make_model(other_team, "secret-asr")
    make_version(model, 1)
    placement, _ = placement_create(actor=Actor.system(), model=model, versions=[1], servers=[server])
    return placement


def test_server_page_shows_health_version_loaded_models_placements_and_history(platform_admin, server, placed, speech_placed):
    Server.objects.filter(pk=server.pk).update(
        status="up", is_live=True, is_ready=True, triton_version="2.51.0", last_probe_at=timezone.now(),
        repository_index=[{"name": "vision.fraud-scorer", "version": "1", "state": "READY", "reason": ""},
                          {"name": "never-loaded"}],
    )
    # An edit made from a copy read before that probe must not write the probe's fields back.
    services.server_update(actor=Actor(user=platform_admin, source="ui"), server=server, gpu_type="L4")
    body = client_for(platform_admin).get(f"/fleet/servers/{server.pk}/").content.decode()
    assert "2.51.0" in body and "Up" in body
    assert 'data-model="vision.fraud-scorer"' in body and "READY" in body
    assert 'data-model="never-loaded"' not in body  # only models with a state are loaded
    assert "fraud-scorer</a>" in body and "secret-asr</a>" in body  # a platform admin sees every team's
    assert "server.update" in body  # its own history
    assert "Remove server" in body and "Drain first" in body


def test_a_team_user_sees_only_their_teams_placements_and_no_admin_actions(deployer, platform_admin, server, placed, speech_placed):
    Server.objects.filter(pk=server.pk).update(last_seen_at=timezone.now(), repository_index=[
        {"name": "vision.fraud-scorer", "version": "1", "state": "READY"},
        {"name": "speech.secret-asr", "version": "1", "state": "READY"},
    ])
    body = client_for(deployer).get(f"/fleet/servers/{server.pk}/").content.decode()
    assert "fraud-scorer</a>" in body and 'data-model="vision.fraud-scorer"' in body
    assert "secret-asr" not in body and "speech" not in body
    assert "Remove server" not in body and f"/fleet/servers/{server.pk}/edit/" not in body
    for headers in ({}, {"HX-Request": "true"}):  # the page, and the fragment htmx polls
        listed = client_for(deployer).get("/fleet/", headers=headers).content.decode()
        assert "vision.fraud-scorer" in listed and "secret-asr" not in listed
    assert "speech.secret-asr" in client_for(platform_admin).get("/fleet/").content.decode()
    fleet = client_for(deployer).get("/fleet/").content.decode()
    assert "Register a server" not in fleet and "Create a pool" not in fleet
    assert f'href="/fleet/servers/{server.pk}/"' in fleet


def test_a_team_user_sees_no_platform_history(deployer, platform_admin, server):
    services.server_update(actor=Actor(user=platform_admin, source="ui"), server=server, gpu_type="L4")
    body = client_for(deployer).get(f"/fleet/servers/{server.pk}/").content.decode()
    assert "server.update" not in body and "No recorded changes." in body


@pytest.mark.parametrize("path, method", [
    ("/fleet/servers/new/", "get"), ("/fleet/servers/new/", "post"), ("/fleet/servers/{pk}/edit/", "get"),
    ("/fleet/servers/{pk}/edit/", "post"), ("/fleet/servers/{pk}/remove/", "post"), ("/fleet/pools/new/", "get"),
    ("/fleet/pools/new/", "post"), ("/fleet/pools/cpu/edit/", "post"), ("/fleet/pools/cpu/remove/", "post"),
])
def test_team_users_get_403_from_every_admin_form(team_admin, server, path, method):
    before = AuditEvent.objects.count()
    response = getattr(client_for(team_admin), method)(path.format(pk=server.pk), {"name": "x", "drain": "on"})
    assert response.status_code == 403
    assert AuditEvent.objects.count() == before and Server.objects.filter(pk=server.pk).exists()


def test_register_form_puts_each_refusal_next_to_its_field(platform_admin, pool, server):
    client = client_for(platform_admin)
    response = client.post("/fleet/servers/new/", {
        "name": "triton-1", "pool": "cpu", "http_url": "http://127.0.0.1:9", "gpu_count": "0", "labels": "",
    })
    assert response.status_code == 200
    assert response.context["form"].errors == {"name": ["A server named triton-1 already exists."]}
    response = client.post("/fleet/servers/new/", {
        "name": "triton-9", "pool": "cpu", "http_url": "file:///etc/passwd", "gpu_count": "0", "labels": "Zone=x",
    })
    errors = response.context["form"].errors
    assert set(errors) == {"http_url", "labels"} and "http://" in errors["http_url"][0] and "Zone" in errors["labels"][0]
    response = client.post("/fleet/servers/new/", {
        "name": "triton-9", "pool": "cpu", "http_url": "http://x:1", "gpu_count": "0", "labels": "zone eu",
    })
    assert "Line 1: write key=value" in response.context["form"].errors["labels"][0]
    assert not Server.objects.filter(name="triton-9").exists()
    body = response.content.decode()
    assert 'id="err-labels"' in body


def test_register_then_edit_through_the_forms(platform_admin, pool, django_capture_on_commit_callbacks):
    client = client_for(platform_admin)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/fleet/servers/new/", {
            "name": "triton-7", "pool": "cpu", "http_url": "http://127.0.0.1:9", "grpc_url": "127.0.0.1:8001",
            "gpu_type": "L4", "gpu_count": "2", "labels": "zone=eu-1a\nrack = r7",
        })
    server = Server.objects.get(name="triton-7")
    assert response.status_code == 302 and response["Location"] == f"/fleet/servers/{server.pk}/"
    assert server.labels == {"zone": "eu-1a", "rack": "r7"} and server.gpu_count == 2
    assert AuditEvent.objects.get(action="server.register").source == "ui"
    gpu = Pool.objects.create(name="gpu")
    form = client.get(f"/fleet/servers/{server.pk}/edit/").context["form"]
    assert form.initial["labels"] == "rack=r7\nzone=eu-1a"
    data = {**form.initial, "pool": "gpu", "gpu_count": "4"}
    response = client.post(f"/fleet/servers/{server.pk}/edit/", data)
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="server.update")
    assert event.before["gpu_count"] == 2 and event.after["gpu_count"] == 4 and event.after["pool"] == gpu.pk
    server.refresh_from_db()
    assert (server.pool.name, server.labels) == ("gpu", {"zone": "eu-1a", "rack": "r7"})


def test_remove_form_refuses_next_to_drain_then_drains(platform_admin, server, placed, django_capture_on_commit_callbacks):
    client = client_for(platform_admin)
    response = client.post(f"/fleet/servers/{server.pk}/remove/", {})
    assert response.status_code == 200
    assert "fraud-scorer" in response.context["remove_form"].errors["drain"][0]
    assert 'id="err-drain"' in response.content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/fleet/servers/{server.pk}/remove/", {"drain": "on"})
    assert response.status_code == 302 and response["Location"] == f"/fleet/servers/{server.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "draining" in page and "Draining since" in page


def test_pool_forms_create_edit_and_refuse_removal_naming_servers(platform_admin, pool, server):
    client = client_for(platform_admin)
    assert client.post("/fleet/pools/new/", {"name": "gpu-l4", "description": "L4s"}).status_code == 302
    response = client.post("/fleet/pools/new/", {"name": "Bad Name"})
    assert "name" in response.context["form"].errors
    assert client.post("/fleet/pools/gpu-l4/edit/", {"name": "gpu-l4", "description": "Spare L4s"}).status_code == 302
    assert Pool.objects.get(name="gpu-l4").description == "Spare L4s"
    response = client.post("/fleet/pools/cpu/remove/", follow=True)
    assert "still has servers (triton-1)" in response.content.decode()
    assert Pool.objects.filter(name="cpu").exists()
    assert client.post("/fleet/pools/gpu-l4/remove/").status_code == 302
    assert not Pool.objects.filter(name="gpu-l4").exists()
    assert [e.action for e in AuditEvent.objects.filter(object_type="fleet.pool").order_by("id")] == [
        "pool.create", "pool.update", "pool.delete"]


@pytest.mark.parametrize("who", ["platform_admin", "deployer"])
def test_server_page_query_count_does_not_grow(request, who, server, team):
    user = request.getfixturevalue(who)
    client = client_for(user)
    admin = Actor(user=_user("root", is_staff=True), source="api")

    def add(n, start):
        for i in range(start, start + n):
            model = make_model(team, f"m{i}")
            make_version(model, 1)
            placement_create(actor=Actor.system(), model=model, versions=[1], servers=[server])
            services.server_update(actor=admin, server=server, gpu_count=i % 64)
        Server.objects.filter(pk=server.pk).update(
            repository_index=[{"name": f"m{i}", "version": "1", "state": "READY"} for i in range(start + n)])

    def count():
        with CaptureQueriesContext(connection) as queries:
            body = client.get(f"/fleet/servers/{server.pk}/").content.decode()
        return len(queries), body.count("data-target=")

    add(1, 0)
    few, few_rows = count()
    add(6, 1)
    many, many_rows = count()
    assert (few_rows, many_rows) == (1, 7)
    assert few == many
