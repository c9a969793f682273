"""The endpoint pages with Django's test client: list, create, edit and delete through the forms,
refusals next to their fields with the API's status, roles and teams, and the replicas section."""
import re
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.endpoints import services
from controlplane.endpoints.models import Endpoint, GatewayReplica, RoutingTableState
from tests.endpoints.conftest import V, events, make_servers, pinned, place_ready
from tests.quotas.conftest import make_model, make_version


@pytest.fixture
def signed_in(client):
    def sign_in(user):
        client.force_login(user)
        return client
    return sign_in


def form_data(the_model, **overrides):
    data = {"team": "vision", "model": str(the_model.pk), "name": "fraud", "kind": "pinned", "access": "token",
            "variant-0-name": "a", "variant-0-version": "1", "variant-0-weight": "90",
            "variant-1-name": "b", "variant-1-version": "2", "variant-1-weight": "10"}
    data.update(overrides)
    return data


def html(response) -> str:
    return response.content.decode()


def field_error(response, field) -> str:
    """The text of the error shown next to ``field`` (its own block or its variant cell)."""
    page = html(response)
    match = re.search(rf'name="{re.escape(field)}"[^>]*>(?:(?!</td>|</div>).)*?class="field-error"[^>]*>([^<]*)<', page, re.S)
    return unescape(match.group(1)) if match else ""


def test_the_list_shows_each_endpoint_with_variants_weights_and_status(signed_in, deployer, team, model, versions, pool, stable):
    [server] = make_servers(pool, "triton-1")
    place_ready(model, [1], [server])
    pinned(Actor(user=deployer, source="api"), team, model, name="fraud", access="open")
    services.endpoint_create(actor=Actor(user=deployer, source="api"), team=team, model=model, name="next",
                             kind="label", label="latest")
    page = html(signed_in(deployer).get("/endpoints/"))
    fraud = re.search(r'<tr data-endpoint="vision.fraud">.*?</tr>', page, re.S).group(0)
    assert "fraud-scorer" in fraud and "pinned" in fraud and ">open<" in fraud
    assert "a: v1 × 90" in fraud and "b: v2 × 10" in fraud
    assert 'data-endpoint-status="serving"' in fraud
    following = re.search(r'<tr data-endpoint="vision.next">.*?</tr>', page, re.S).group(0)
    assert "latest: v4" in following and 'data-endpoint-status="no ready server"' in following
    assert 'href="/endpoints/new/"' in page and 'aria-current="page">Endpoints<' in page


def test_the_list_shows_the_gateway_replicas_current_or_behind(signed_in, viewer, team):
    RoutingTableState.objects.create(pk=1, version=7)
    now = timezone.now()
    GatewayReplica.objects.create(replica_id="gw-a:1", address="10.0.0.5:9000", table_version=7, last_seen_at=now - timedelta(seconds=3))
    GatewayReplica.objects.create(replica_id="gw-b:1", table_version=6, last_seen_at=now - timedelta(seconds=40))
    page = html(signed_in(viewer).get("/endpoints/"))
    a = re.search(r'<tr data-replica="gw-a:1">.*?</tr>', page, re.S).group(0)
    b = re.search(r'<tr data-replica="gw-b:1">.*?</tr>', page, re.S).group(0)
    assert "10.0.0.5:9000" in a and "v7" in a and re.search(r"\b[34] s ago", a) and ">current<" in a
    assert ">behind<" in b and re.search(r"\b4[01] s ago", b)
    assert "routing table v7" in page
    assert 'href="/endpoints/new/"' not in page  # a viewer creates nothing


def test_with_no_table_yet_every_replica_is_current(signed_in, viewer, team):
    GatewayReplica.objects.create(replica_id="gw-a:1", table_version=0, last_seen_at=timezone.now())
    page = html(signed_in(viewer).get("/endpoints/"))
    assert "routing table v0" in page and ">current<" in page


def test_create_a_pinned_endpoint_through_the_form(signed_in, deployer, model, versions):
    client = signed_in(deployer)
    form_page = client.get("/endpoints/new/")
    assert form_page.status_code == 200 and 'name="variant-3-weight"' in html(form_page)
    response = client.post("/endpoints/new/", form_data(model, sticky_header="X-User-Id", shadow_version="3", shadow_percent="5"))
    endpoint = Endpoint.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/endpoints/{endpoint.pk}/"
    assert [(v.name, v.version.version, v.weight) for v in endpoint.variants.all()] == [("a", 1, 90), ("b", 2, 10)]
    assert endpoint.sticky_header == "X-User-Id" and endpoint.shadow_version.version == 3 and endpoint.shadow_percent == 5
    [event] = events("endpoint.create")
    assert event.source == "ui" and event.after["shadow"]["rtol"] == 1e-5
    page = html(client.get(response["Location"]))
    assert "Endpoint vision.fraud created." in page and "vision.fraud" in page


def test_a_label_bound_endpoint_ignores_the_variant_rows(signed_in, deployer, model, stable):
    response = signed_in(deployer).post("/endpoints/new/", form_data(model, kind="label", label="stable"))
    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert endpoint.kind == "label" and not endpoint.variants.exists()


@pytest.mark.parametrize("overrides, field, words", [
    ({"variant-1-weight": "1000001"}, "variant-1-weight", "0 to 1000000"),
    ({"variant-1-version": "9"}, "variant-1-version", "no registered, ready version 9"),
    ({"variant-1-name": "a"}, "variant-1-name", "Two variants are named a"),
    ({"variant-0-name": "", "variant-0-version": "", "variant-0-weight": "", "variant-2-name": "c",
      "variant-2-version": "9", "variant-2-weight": "1"}, "variant-2-version", "no registered, ready version 9"),
    ({"variant-1-weight": "x"}, "variant-1-weight", "whole number"),
    ({"name": "Fraud"}, "name", "lowercase"),
    ({"sticky_header": "X User"}, "sticky_header", "header name"),
    ({"shadow_version": "1", "shadow_percent": "5"}, "shadow_version", "already serves"),
    ({"shadow_version": "3"}, "shadow_percent", "0 to 100"),
    ({"kind": "label", "label": "canary"}, "label", "no label 'canary'"),
])
def test_a_refusal_sits_next_to_its_field_with_a_400(signed_in, deployer, model, versions, overrides, field, words):
    response = signed_in(deployer).post("/endpoints/new/", form_data(model, **overrides))
    assert response.status_code == 400
    assert words in field_error(response, field), html(response)[:3000]
    assert not Endpoint.objects.exists() and events("endpoint.create") == []


def test_zero_weights_are_a_form_error_about_the_variants(signed_in, deployer, model, versions):
    response = signed_in(deployer).post("/endpoints/new/", form_data(model, **{"variant-0-weight": "0", "variant-1-weight": "0"}))
    assert response.status_code == 400 and "variants: The weights add up to 0" in html(response)


def test_a_used_name_is_a_409_next_to_the_name(signed_in, deployer, team, model, versions):
    pinned(Actor(user=deployer, source="api"), team, model)
    response = signed_in(deployer).post("/endpoints/new/", form_data(model))
    assert response.status_code == 409 and "already has an endpoint named fraud" in field_error(response, "name")


def test_a_team_or_model_the_user_cannot_see_is_a_400(signed_in, deployer, outsider, model, versions, foreign_model):
    response = signed_in(outsider).post("/endpoints/new/", form_data(model))
    assert response.status_code == 400 and "No team named 'vision'" in field_error(response, "team")
    response = signed_in(deployer).post("/endpoints/new/", form_data(model, model=str(foreign_model.pk)))
    assert response.status_code == 400 and f"No model with id {foreign_model.pk} in team vision" in field_error(response, "model")
    assert "asr" not in html(response).split('name="model"')[1].split("</select>")[0]  # not offered either
    assert not Endpoint.objects.exists()


def test_a_viewer_reads_but_is_refused_every_change_with_a_403(signed_in, deployer, viewer, team, model, versions):
    endpoint = pinned(Actor(user=deployer, source="api"), team, model)
    client = signed_in(viewer)
    assert client.get("/endpoints/new/").status_code == 403
    assert client.post("/endpoints/new/", form_data(model, name="other")).status_code == 403
    page = client.get(f"/endpoints/{endpoint.pk}/")
    assert page.status_code == 200 and "vision.fraud" in html(page)
    assert 'action="/endpoints/%d/edit/"' % endpoint.pk not in html(page) and "Delete endpoint" not in html(page)
    refused = client.post(f"/endpoints/{endpoint.pk}/edit/", form_data(model, access="open"))
    assert refused.status_code == 403 and "needs the deployer role" in html(refused)
    assert client.post(f"/endpoints/{endpoint.pk}/delete/").status_code == 403
    assert Endpoint.objects.filter(access="token").count() == 1
    assert events("endpoint.update") == [] and events("endpoint.delete") == []


def test_another_team_gets_404_on_every_page_of_the_endpoint(signed_in, deployer, outsider, team, model, versions):
    endpoint = pinned(Actor(user=deployer, source="api"), team, model)
    client = signed_in(outsider)
    assert "vision.fraud" not in html(client.get("/endpoints/"))
    assert client.get(f"/endpoints/{endpoint.pk}/").status_code == 404
    assert client.post(f"/endpoints/{endpoint.pk}/edit/", form_data(model)).status_code == 404
    assert client.post(f"/endpoints/{endpoint.pk}/delete/").status_code == 404
    assert Endpoint.objects.filter(pk=endpoint.pk).exists()


def test_edit_a_weight_then_delete(signed_in, deployer, team, model, versions, pool):
    endpoint = pinned(Actor(user=deployer, source="api"), team, model)
    client = signed_in(deployer)
    page = html(client.get(f"/endpoints/{endpoint.pk}/"))
    assert 'name="variant-1-weight"' in page and 'value="10"' in page and 'name="variant-5-weight"' in page
    assert 'data-confirm="Delete endpoint vision.fraud?' in page
    data = form_data(model, **{"variant-1-weight": "30"})
    del data["team"], data["model"]
    response = client.post(f"/endpoints/{endpoint.pk}/edit/", data)
    assert response.status_code == 302
    assert [v.weight for v in endpoint.variants.all()] == [90, 30]
    [event] = events("endpoint.update")
    assert event.source == "ui" and [v["weight"] for v in event.before["variants"]] == [90, 10]
    followed = html(client.get(response["Location"]))
    assert "Endpoint vision.fraud saved." in followed and "endpoint.update" in followed  # the history
    again = client.post(f"/endpoints/{endpoint.pk}/edit/", {**data})
    assert again.status_code == 302 and "Nothing changed." in html(client.get(again["Location"]))
    refused = client.post(f"/endpoints/{endpoint.pk}/edit/", {**data, "variant-1-weight": "-1"})
    assert refused.status_code == 400 and [v.weight for v in endpoint.variants.all()] == [90, 30]
    response = client.post(f"/endpoints/{endpoint.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/endpoints/"
    assert not Endpoint.objects.exists() and len(events("endpoint.delete")) == 1
    assert "Endpoint vision.fraud deleted." in html(client.get("/endpoints/"))


def test_user_text_is_escaped(signed_in, deployer, team, model, versions):
    pinned(Actor(user=deployer, source="api"), team, model, description='<img src=x onerror="alert(1)">')
    endpoint = Endpoint.objects.get()
    page = html(signed_in(deployer).get(f"/endpoints/{endpoint.pk}/"))
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_the_list_costs_the_same_queries_with_more_endpoints(signed_in, deployer, team, model, versions, pool, stable):
    client = signed_in(deployer)
    servers = make_servers(pool, *[f"t{i}" for i in range(6)])
    now = timezone.now()

    def fetch():
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/endpoints/")
        assert response.status_code == 200
        return len(ctx.captured_queries), html(response).count("<tr data-")

    pinned(Actor(user=deployer, source="api"), team, model, name="p0", shadow=services.ShadowSpec(version=3, percent=1))
    services.endpoint_create(actor=Actor.system(), team=team, model=model, name="l0", kind="label", label="latest")
    GatewayReplica.objects.create(replica_id="r0", last_seen_at=now)
    place_ready(model, [1], servers[:1])
    few, rows = fetch()
    for i in range(1, 6):
        other = make_model(team, f"m{i}")
        make_version(other, 1)
        pinned(Actor(user=deployer, source="api"), team, other, name=f"p{i}", variants=[V("a", 1, 1)])
        services.endpoint_create(actor=Actor.system(), team=team, model=model, name=f"l{i}", kind="label", label="stable")
        GatewayReplica.objects.create(replica_id=f"r{i}", last_seen_at=now)
        place_ready(other, [1], servers[i:i + 1])
    many, more_rows = fetch()
    assert more_rows > rows and many == few
