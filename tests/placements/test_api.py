"""/api/v1/placements/: create, read, retry, remove; errors in the house format."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlplane.audit.models import AuditEvent
from controlplane.placements import services
from controlplane.placements.models import Placement, PlacementTarget
from controlplane.quotas.services import quota_set
from tests.placements.conftest import make_config, make_model, make_version

URL = "/api/v1/placements/"


@pytest.fixture
def body(model, versions, offline_servers):
    def make(**overrides):
        return {"model": model.pk, "versions": [1], "servers": ["triton-0", "triton-1"]} | overrides

    return make


def test_create_then_the_same_again(api, deployer, body, model):
    client = api(deployer)
    response = client.post(URL, body(), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["model"], data["triton_name"], data["versions"], data["config_revision"]) == (model.pk, "vision.fraud-scorer", [1], None)
    assert data["is_active"] and data["states"] == {"pending": 2}
    assert [(t["server"], t["state"], t["drift"], t["error"]) for t in data["targets"]] == [
        ("triton-0", "pending", "", ""), ("triton-1", "pending", "", "")]
    assert data["rendered_config"]["version_policy"] == {"specific": {"versions": [1]}}
    event = AuditEvent.objects.get(action="placement.create")
    assert (event.source, event.actor_name) == ("api", "dana")

    again = client.post(URL, body(servers=["triton-1", "triton-0"]), format="json")
    assert again.status_code == 200 and again.json()["id"] == data["id"]
    assert Placement.objects.count() == 1


def test_config_revision_is_pinned_or_named(api, deployer, body, model):
    make_config(model, 1, {"max_batch_size": 4})
    make_config(model, 2, {"max_batch_size": 2})
    client = api(deployer)
    assert client.post(URL, body(), format="json").json()["config_revision"] == 2
    named = client.post(URL, body(config_revision=1, versions=[2]), format="json").json()
    assert (named["config_revision"], named["rendered_config"]["max_batch_size"]) == (1, 4)
    missing = client.post(URL, body(config_revision=9), format="json")
    assert missing.status_code == 400
    assert missing.json()["fields"] == {"config_revision": ["fraud-scorer has no config revision 9."]}


@pytest.mark.parametrize("overrides, field, text", [
    ({"versions": []}, "versions", "at least one version"),
    ({"versions": [5]}, "versions", "v5 of fraud-scorer is not a registered, ready version"),
    ({"servers": ["nope"]}, "servers", "No server named nope"),
    ({"servers": ["triton-0", "triton-0"]}, "servers", "triton-0 is listed twice"),
    ({"colour": "red"}, "colour", "Unknown field"),
])
def test_validation_errors_name_the_field(api, deployer, body, overrides, field, text):
    response = api(deployer).post(URL, body(**overrides), format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field] and text in response.json()["fields"][field][0]
    assert text in response.json()["detail"]
    assert Placement.objects.count() == 0


def test_quota_refusal_is_409_with_the_numbers(api, deployer, platform_admin, team, model, versions, gpu_servers):
    from controlplane.audit.context import Actor

    make_config(model, 1, {"instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [0]}]})
    quota_set(actor=Actor(user=platform_admin, source="api"), team=team, gpus=1)
    response = api(deployer).post(URL, {"model": model.pk, "versions": [1], "servers": ["gpu-0", "gpu-1"]}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "gpus: team vision would hold 2 of 1 GPU: fraud-scorer v1 on 2 servers needs 2 new on top of 0 held",
        "fields": {"gpus": ["team vision would hold 2 of 1 GPU: fraud-scorer v1 on 2 servers needs 2 new on top of 0 held"]},
    }
    assert Placement.objects.count() == 0


def test_viewers_read_but_may_not_write_and_outsiders_see_nothing(api, deployer, viewer, outsider, body):
    placement_id = api(deployer).post(URL, body(), format="json").json()["id"]
    as_viewer = api(viewer)
    assert as_viewer.get(f"{URL}{placement_id}/").status_code == 200
    assert as_viewer.post(URL, body(versions=[2]), format="json").status_code == 403
    assert as_viewer.delete(f"{URL}{placement_id}/").status_code == 403
    assert as_viewer.post(f"{URL}{placement_id}/retry/").status_code == 403
    as_outsider = api(outsider)
    assert as_outsider.get(URL).json()["count"] == 0
    assert as_outsider.get(f"{URL}{placement_id}/").status_code == 404
    assert as_outsider.post(URL, body(), format="json").status_code == 404  # the model is invisible too
    assert as_outsider.delete(f"{URL}{placement_id}/").status_code == 404
    assert Placement.objects.get().removed_at is None


def test_list_filters_by_model_and_activity(api, deployer, body, team, offline_servers):
    other = make_model(team, "other")
    make_version(other, 1)
    client = api(deployer)
    first = client.post(URL, body(), format="json").json()["id"]
    second = client.post(URL, {"model": other.pk, "versions": [1], "servers": ["triton-0"]}, format="json").json()["id"]
    client.delete(f"{URL}{second}/")
    assert [p["id"] for p in client.get(URL).json()["results"]] == [second, first]
    assert [p["id"] for p in client.get(URL, {"model": other.pk}).json()["results"]] == [second]
    assert [p["id"] for p in client.get(URL, {"active": "true"}).json()["results"]] == [first]
    assert [p["id"] for p in client.get(URL, {"server": "triton-1"}).json()["results"]] == [first]


def test_retry_and_remove(api, deployer, body):
    client = api(deployer)
    placement_id = client.post(URL, body(), format="json").json()["id"]
    services.placement_apply(placement_id=placement_id)  # connection refused on both
    detail = client.get(f"{URL}{placement_id}/").json()
    assert detail["states"] == {"failed": 2} and "Connection refused" in detail["targets"][0]["error"]

    retried = client.post(f"{URL}{placement_id}/retry/")
    assert retried.status_code == 202
    assert retried.json()["retried"] == ["triton-0", "triton-1"] and retried.json()["placement"]["states"] == {"pending": 2}
    assert client.post(f"{URL}{placement_id}/retry/").json()["retried"] == []

    removed = client.delete(f"{URL}{placement_id}/")
    assert removed.status_code == 202 and removed.json()["removed_at"] and removed.json()["states"] == {"unloading": 2}
    assert client.delete(f"{URL}{placement_id}/").status_code == 202
    gone = client.post(f"{URL}{placement_id}/retry/")
    assert gone.status_code == 409 and "was removed" in gone.json()["fields"]["placement"][0]


def test_list_query_count_does_not_grow(api, deployer, model, versions, offline_servers, pool):
    from controlplane.audit.context import Actor
    from controlplane.fleet.models import Server

    actor = Actor(user=deployer, source="api")
    services.placement_create(actor=actor, model=model, versions=[1], servers=offline_servers)
    client = api(deployer)

    def count():
        with CaptureQueriesContext(connection) as queries:
            assert client.get(URL).status_code == 200
        return len(queries)

    few = count()
    for i in range(5):
        m = make_model(model.team, f"m-{i}")
        make_version(m, 1)
        more = [Server.objects.create(name=f"s-{i}-{j}", pool=pool, http_url="http://127.0.0.1:9") for j in range(3)]
        services.placement_create(actor=actor, model=m, versions=[1], servers=more)
    assert PlacementTarget.objects.count() == 17
    assert count() == few
