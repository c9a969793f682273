"""/api/v1/endpoints/: list, create, retrieve, partial update and delete; strict input; team isolation."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlplane.audit.context import Actor
from controlplane.endpoints import services
from controlplane.endpoints.models import Endpoint
from tests.endpoints.conftest import V, events, make_servers, pinned, place_ready
from tests.quotas.conftest import make_model, make_version

URL = "/api/v1/endpoints/"


def body(the_model, **overrides):
    data = {"team": "vision", "name": "fraud", "model": the_model.pk, "kind": "pinned",
            "variants": [{"name": "a", "version": 1, "weight": 90}, {"name": "b", "version": 2, "weight": 10}]}
    data.update(overrides)
    return data


def test_create_answers_201_with_the_endpoint_and_its_status(api, deployer, model, versions, pool):
    [server] = make_servers(pool, "triton-1")
    place_ready(model, [1], [server])
    response = api(deployer).post(URL, body(model, access="open", sticky={"header": "X-User-Id"},
                                            shadow={"version": 3, "percent": 5}), format="json")
    assert response.status_code == 201, response.data
    data = response.json()
    assert {k: data[k] for k in ("team", "name", "public_name", "model", "model_name", "kind", "label", "access", "sticky")} == {
        "team": "vision", "name": "fraud", "public_name": "vision.fraud", "model": model.pk, "model_name": "fraud-scorer",
        "kind": "pinned", "label": "", "access": "open", "sticky": {"header": "X-User-Id"}}
    assert data["variants"] == [{"name": "a", "version": 1, "weight": 90}, {"name": "b", "version": 2, "weight": 10}]
    assert data["shadow"] == {"version": 3, "percent": 5.0, "rtol": 1e-5, "atol": 1e-6}
    assert data["status"] == {
        "state": "serving",
        "variants": [{"name": "a", "version": 1, "weight": 90, "servers": ["triton-1"]},
                     {"name": "b", "version": 2, "weight": 10, "servers": []}],
        "shadow": {"name": "shadow", "version": 3, "weight": 0, "servers": []},
    }
    assert data["created_by"] == "dana"
    assert events("endpoint.create")[0].source == "api"


def test_a_label_bound_endpoint_shows_its_label_resolved_in_the_status(api, deployer, model, stable):
    response = api(deployer).post(URL, {"team": "vision", "name": "scorer", "model": model.pk, "kind": "label",
                                        "label": "stable"}, format="json")
    assert response.status_code == 201, response.data
    assert response.data["variants"] == [] and response.data["access"] == "token" and response.data["sticky"] is None
    assert response.data["status"]["variants"] == [{"name": "stable", "version": 1, "weight": 1, "servers": []}]
    assert response.data["status"]["state"] == "no ready server"


@pytest.mark.parametrize("overrides, field", [
    ({"variants": [{"name": "a", "version": 1, "weight": "5"}]}, "variants[0].weight"),
    ({"variants": [{"name": "a", "version": 1.0, "weight": 5}]}, "variants[0].version"),
    ({"variants": [{"name": "a", "version": 1, "weight": True}]}, "variants[0].weight"),
    ({"variants": [{"name": "a", "version": 1, "weight": 1_000_001}]}, "variants[0].weight"),
    ({"variants": [{"name": "a", "version": 1, "weight": 5, "extra": 1}]}, "variants[0].extra"),
    ({"variants": [{"name": 7, "version": 1, "weight": 5}]}, "variants[0].name"),
    ({"variants": "a"}, "variants"),
    ({"name": 5}, "name"),
    ({"model": "1"}, "model"),
    ({"team": ["vision"]}, "team"),
    ({"kind": 1}, "kind"),
    ({"access": "public"}, "access"),
    ({"sticky": {"header": "X-User-Id", "cookie": "uid"}}, "sticky"),
    ({"sticky": {"query": "u"}}, "sticky.query"),
    ({"sticky": "X-User-Id"}, "sticky"),
    ({"shadow": {"version": 3, "percent": "5"}}, "shadow.percent"),
    ({"shadow": {"version": 3, "percent": 101}}, "shadow.percent"),
    ({"shadow": {"version": 3, "percent": 10**400}}, "shadow.percent"),
    ({"shadow": {"version": 1, "percent": 5}}, "shadow.version"),
    ({"shadow": {"percent": 5}}, "shadow.version"),
    ({"unknown": 1}, "unknown"),
    ({"variants": []}, "variants"),
    ({"variants": [{"name": "a", "version": 99, "weight": 5}]}, "variants[0].version"),
    ({"name": "Fraud"}, "name"),
    ({"label": "stable"}, "label"),
])
def test_bad_input_is_a_400_naming_the_field(api, deployer, model, versions, overrides, field):
    response = api(deployer).post(URL, body(model, **overrides), format="json")
    assert response.status_code == 400, response.data
    assert field in response.data["fields"], response.data
    assert field in response.data["detail"]
    assert not Endpoint.objects.exists()


def test_only_json_bodies(api, deployer, model, versions):
    response = api(deployer).post(URL, {"team": "vision", "name": "x"}, format="multipart")
    assert response.status_code == 415


def test_a_used_name_is_a_409_naming_the_field(api, deployer, model, versions):
    assert api(deployer).post(URL, body(model), format="json").status_code == 201
    response = api(deployer).post(URL, body(model), format="json")
    assert response.status_code == 409 and list(response.data["fields"]) == ["name"]


def test_a_team_or_model_the_caller_cannot_see_is_a_400_that_reveals_nothing(api, deployer, outsider, model, versions, foreign_model):
    response = api(outsider).post(URL, body(model), format="json")
    assert response.status_code == 400 and list(response.data["fields"]) == ["team"]
    assert "fraud-scorer" not in str(response.data)
    # vision's deployer names speech's model by id: the same words as for an id that does not exist
    response = api(deployer).post(URL, body(model, model=foreign_model.pk), format="json")
    missing = api(deployer).post(URL, body(model, model=10**9), format="json")
    assert response.status_code == missing.status_code == 400
    assert response.data["fields"]["model"] == [f"No model with id {foreign_model.pk} in team vision."]
    assert "asr" not in str(response.data) and "speech" not in str(response.data)


def test_viewers_read_but_may_not_write(api, deployer, viewer, model, versions, team):
    endpoint = pinned(_actor(deployer), team, model)
    client = api(viewer)
    assert client.get(URL).json()["count"] == 1
    assert client.get(f"{URL}{endpoint.pk}/").status_code == 200
    assert client.post(URL, body(model, name="other"), format="json").status_code == 403
    assert client.patch(f"{URL}{endpoint.pk}/", {"access": "open"}, format="json").status_code == 403
    assert client.delete(f"{URL}{endpoint.pk}/").status_code == 403
    assert Endpoint.objects.count() == 1 and events("endpoint.update") == events("endpoint.delete") == []


def test_other_teams_get_404_everywhere(api, deployer, outsider, model, versions, team):
    endpoint = pinned(_actor(deployer), team, model)
    client = api(outsider)
    assert client.get(URL).json()["count"] == 0
    for response in (
        client.get(f"{URL}{endpoint.pk}/"),
        client.patch(f"{URL}{endpoint.pk}/", {"variants": [{"name": "a", "version": 99, "weight": 1}]}, format="json"),
        client.delete(f"{URL}{endpoint.pk}/"),
    ):
        assert response.status_code == 404
        assert "fraud" not in str(response.data)
    assert api().get(URL).status_code in (401, 403)


def test_partial_update_changes_only_what_it_names(api, deployer, model, versions, team):
    endpoint = pinned(_actor(deployer), team, model, sticky_header="X-User-Id")
    client = api(deployer)
    response = client.patch(f"{URL}{endpoint.pk}/", {"variants": [{"name": "a", "version": 1, "weight": 50},
                                                                 {"name": "b", "version": 2, "weight": 50}]}, format="json")
    assert response.status_code == 200, response.data
    assert [v["weight"] for v in response.data["variants"]] == [50, 50]
    assert response.data["sticky"] == {"header": "X-User-Id"}
    [event] = events("endpoint.update")
    assert [v["weight"] for v in event.before["variants"]] == [90, 10]
    response = client.patch(f"{URL}{endpoint.pk}/", {"sticky": None, "shadow": {"version": 4, "percent": 1.5}}, format="json")
    assert response.data["sticky"] is None and response.data["shadow"]["version"] == 4
    # the same again changes nothing and writes nothing
    assert client.patch(f"{URL}{endpoint.pk}/", {"access": "token"}, format="json").status_code == 200
    assert len(events("endpoint.update")) == 2


def test_the_team_and_the_model_cannot_be_patched(api, deployer, model, versions, team):
    endpoint = pinned(_actor(deployer), team, model)
    response = api(deployer).patch(f"{URL}{endpoint.pk}/", {"model": model.pk, "team": "vision"}, format="json")
    assert response.status_code == 400 and set(response.data["fields"]) == {"model", "team"}
    response = api(deployer).patch(f"{URL}{endpoint.pk}/", {"weight": "5"}, format="json")
    assert response.status_code == 400 and list(response.data["fields"]) == ["weight"]


def test_put_is_not_offered(api, deployer, model, versions, team):
    endpoint = pinned(_actor(deployer), team, model)
    assert api(deployer).put(f"{URL}{endpoint.pk}/", body(model), format="json").status_code == 405


def test_delete_answers_204(api, deployer, model, versions, team):
    endpoint = pinned(_actor(deployer), team, model)
    assert api(deployer).delete(f"{URL}{endpoint.pk}/").status_code == 204
    assert not Endpoint.objects.exists() and len(events("endpoint.delete")) == 1
    assert api(deployer).delete(f"{URL}{endpoint.pk}/").status_code == 404


def test_filters_by_team_and_model(api, platform_admin, deployer, outsider, team, other_team, model, versions, foreign_model):
    pinned(_actor(deployer), team, model, name="one")
    other = make_model(team, "ranker")
    make_version(other, 1)
    pinned(_actor(deployer), team, other, name="two", variants=[V("a", 1, 1)])
    pinned(_actor(outsider), other_team, foreign_model, name="three", variants=[V("a", 1, 1)])
    client = api(platform_admin)

    def names(query):
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 200, response.data
        return [e["public_name"] for e in response.json()["results"]]

    assert names("") == ["speech.three", "vision.one", "vision.two"]
    assert names("team=vision") == ["vision.one", "vision.two"]
    assert names(f"model={other.pk}") == ["vision.two"]
    assert names(f"team=speech&model={model.pk}") == []
    assert client.get(f"{URL}?model=x").status_code == 400


def test_the_list_costs_the_same_queries_for_many_endpoints(api, deployer, team, model, versions, pool, stable):
    servers = make_servers(pool, *[f"t{i}" for i in range(8)])
    client = api(deployer)

    def fetch():
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(URL)
        assert response.status_code == 200
        return len(ctx.captured_queries), len(response.json()["results"])

    pinned(_actor(deployer), team, model, name="p0", shadow=services.ShadowSpec(version=3, percent=1))
    services.endpoint_create(actor=_actor(deployer), team=team, model=model, name="l0", kind="label", label="latest")
    place_ready(model, [1], servers[:1])
    few, rows = fetch()
    for i in range(1, 8):
        other = make_model(team, f"m{i}")
        make_version(other, 1)
        pinned(_actor(deployer), team, other, name=f"p{i}", variants=[V("a", 1, 1)])
        services.endpoint_create(actor=_actor(deployer), team=team, model=model, name=f"l{i}", kind="label",
                                 label="stable" if i % 2 else "latest")
        place_ready(other, [1], servers[i:i + 1])
    many, more_rows = fetch()
    assert more_rows > rows and many == few


def _actor(user):
    return Actor(user=user, source="api")


@pytest.mark.parametrize("patch, field", [
    ({"shadow": {}}, "shadow.version"),
    ({"shadow": {"version": 3}}, "shadow.percent"),
    ({"variants": [{"name": "a"}]}, "variants[0].version"),
    ({"variants": [{"name": "a", "version": 1, "weight": 1}, {"version": 2, "weight": 1}]}, "variants[1].name"),
    ({"name": None}, "name"),
])
def test_a_patch_still_needs_whole_nested_objects(api, deployer, model, versions, team, patch, field):
    endpoint = pinned(_actor(deployer), team, model)
    response = api(deployer).patch(f"{URL}{endpoint.pk}/", patch, format="json")
    assert response.status_code == 400 and field in response.data["fields"], response.data
    assert events("endpoint.update") == []


@pytest.mark.parametrize("shadow, field", [
    ({"version": 3, "percent": "5"}, "shadow.percent"),
    ({"version": 3, "percent": None}, "shadow.percent"),
    ({"version": 3, "percent": -0.5}, "shadow.percent"),
    ({"version": 3, "percent": 5, "rtol": "0.1"}, "shadow.rtol"),
    ({"version": 3, "percent": 5, "atol": -1}, "shadow.atol"),
])
def test_shadow_numbers_are_json_numbers_in_range(api, deployer, model, versions, shadow, field):
    response = api(deployer).post(URL, body(model, shadow=shadow), format="json")
    assert response.status_code == 400 and field in response.data["fields"], response.data


def test_an_integer_percent_is_a_number(api, deployer, model, versions):
    response = api(deployer).post(URL, body(model, shadow={"version": 3, "percent": 5, "rtol": 0}), format="json")
    assert response.status_code == 201 and response.data["shadow"] == {"version": 3, "percent": 5.0, "rtol": 0.0, "atol": 1e-6}
