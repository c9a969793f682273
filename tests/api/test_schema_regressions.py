"""The served OpenAPI schema matches what the API really answers (issue 7, item 8).

Each response here is checked by Schemathesis against /api/schema/: status code declared,
content type, headers and body. Each case used to break a generated client.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.fleet.models import Pool, Server
from controlplane.placements.services import placement_create
from controlplane.registry.labels import label_delete, label_set
from controlplane.registry.models import LabelMove
from controlplane.serving.services import serving_config_save
from tests.api.openapi_checks import CHECKS, in_process_requests, load_schema
from tests.quotas.conftest import make_version

SYSTEM = Actor(user=None, source="system")


@pytest.fixture(scope="module")
def openapi():
    return load_schema()


def _secret(user, scope) -> str:
    _, secret = token_create(actor=Actor(user=user, source="api"), user=user, name="t", scopes=[scope],
                             expires_at=timezone.now() + timedelta(days=1))
    return secret


@pytest.fixture
def admin_token(platform_admin):
    return _secret(platform_admin, "admin")


@pytest.fixture
def deployer_token(deployer):
    return _secret(deployer, "deploy")


def call(openapi, method, path, token, **case):
    """Call the operation in process and run the checks; returns the response."""
    with in_process_requests():
        return openapi[path][method].Case(**case).call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def component(openapi, name) -> dict:
    return openapi.raw_schema["components"]["schemas"][name]


def test_audit_event_team_is_nullable(openapi, admin_token):
    """Platform events (a pool) have no team."""
    response = call(openapi, "POST", "/api/v1/pools/", admin_token, body={"name": "cpu"}, media_type="application/json")
    assert response.status_code == 201
    listed = call(openapi, "GET", "/api/v1/audit/events/", admin_token, query={"object_type": "fleet.pool"})
    event = listed.json()["results"][0]
    assert event["team"] is None
    one = call(openapi, "GET", "/api/v1/audit/events/{id}/", admin_token, path_parameters={"id": event["id"]})
    assert one.json()["team"] is None
    assert component(openapi, "AuditEvent")["properties"]["team"]["nullable"] is True


def test_audit_export_json_is_one_array(openapi, admin_token):
    call(openapi, "POST", "/api/v1/pools/", admin_token, body={"name": "cpu"}, media_type="application/json")
    response = call(openapi, "GET", "/api/v1/audit/events/export.{fmt}", admin_token, path_parameters={"fmt": "json"},
                    query={"object_type": "fleet.pool"})
    assert isinstance(response.json(), list) and response.json()[0]["object_type"] == "fleet.pool"
    declared = openapi.raw_schema["paths"]["/api/v1/audit/events/export.{fmt}"]["get"]
    assert declared["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert "page" not in {p["name"] for p in declared["parameters"]}
    assert {"team", "since", "q"} <= {p["name"] for p in declared["parameters"]}  # the filters it applies


def test_audit_export_csv_matches_schema(openapi, admin_token):
    response = call(openapi, "GET", "/api/v1/audit/events/export.{fmt}", admin_token, path_parameters={"fmt": "csv"})
    assert response.headers["content-type"][0].startswith("text/csv")


def test_personal_token_team_is_nullable(openapi, deployer_token):
    response = call(openapi, "GET", "/api/v1/tokens/", deployer_token)
    assert [t["team"] for t in response.json()["results"]] == [None]
    assert component(openapi, "Token")["properties"]["team"]["nullable"] is True
    assert component(openapi, "TokenCreated")["properties"]["team"]["nullable"] is True


def test_members_is_a_plain_list(openapi, deployer_token, team):
    response = call(openapi, "GET", "/api/v1/teams/{slug}/members/", deployer_token, path_parameters={"slug": "vision"})
    assert [m["username"] for m in response.json()] == ["dana"]
    declared = openapi.raw_schema["paths"]["/api/v1/teams/{slug}/members/"]["get"]
    assert declared["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert {p["name"] for p in declared["parameters"]} == {"slug"}


def test_label_history_from_and_to_version_are_nullable(openapi, deployer_token, model):
    make_version(model, 1)
    label_set(actor=SYSTEM, model=model, name="stable", version=1, reason="first")
    label_delete(actor=SYSTEM, model=model, name="stable", reason="gone")
    response = call(openapi, "GET", "/api/v1/models/{model_pk}/label-history/", deployer_token,
                    path_parameters={"model_pk": model.pk}, query={"label": "stable"})
    moves = response.json()["results"]
    assert [(m["from_version"], m["to_version"]) for m in moves] == [(1, None), (None, 1)]


def test_label_delete_takes_the_reason_in_the_query(openapi, deployer_token, model):
    """Generated clients send no body with DELETE (OpenAPI ignores it), so ?reason= is declared."""
    make_version(model, 1)
    label_set(actor=SYSTEM, model=model, name="dev", version=1, reason="first")
    path = "/api/v1/models/{model_pk}/labels/{name}/"
    declared = openapi.raw_schema["paths"][path]["delete"]
    reason = next(p for p in declared["parameters"] if p["name"] == "reason")
    assert (reason["in"], reason["required"]) == ("query", True)
    missing = call(openapi, "DELETE", path, deployer_token, path_parameters={"model_pk": model.pk, "name": "dev"})
    assert missing.status_code == 400 and "reason" in missing.json()["fields"]
    deleted = call(openapi, "DELETE", path, deployer_token, path_parameters={"model_pk": model.pk, "name": "dev"},
                   query={"reason": "retired"})
    assert deleted.status_code == 204
    assert LabelMove.objects.filter(model=model, label="dev").latest("id").reason == "retired"
    assert AuditEvent.objects.filter(action="label.delete", reason="retired").exists()


def test_created_by_is_nullable_for_system_writes(openapi, deployer_token, model):
    """Versions, serving configs and placements made by the system (or by a deleted user)."""
    make_version(model, 1)
    serving_config_save(reason="tune", actor=SYSTEM, model=model, spec={"instance_group": [{"kind": "KIND_CPU", "count": 1}]})
    server = Server.objects.create(name="triton-1", pool=Pool.objects.create(name="cpu"), http_url="http://127.0.0.1:9")
    placement, _ = placement_create(actor=SYSTEM, model=model, versions=[1], servers=[server])
    version = call(openapi, "GET", "/api/v1/models/{model_pk}/versions/{version}/", deployer_token,
                   path_parameters={"model_pk": model.pk, "version": 1})
    configs = call(openapi, "GET", "/api/v1/models/{model_pk}/serving-configs/", deployer_token,
                   path_parameters={"model_pk": model.pk})
    placed = call(openapi, "GET", "/api/v1/placements/{id}/", deployer_token, path_parameters={"id": placement.pk})
    assert (version.json()["created_by"], configs.json()["results"][0]["created_by"], placed.json()["created_by"]) == (None, None, None)


def test_errors_are_declared_in_the_error_shape(openapi, deployer_token, model):
    """404, 400, 403 and 401 answers are declared, with the {"detail", "fields"} body."""
    missing = call(openapi, "GET", "/api/v1/models/{id}/", deployer_token, path_parameters={"id": model.pk + 1000})
    bad = call(openapi, "PUT", "/api/v1/models/{model_pk}/labels/{name}/", deployer_token,
               path_parameters={"model_pk": model.pk, "name": "stable"}, body={"version": 1}, media_type="application/json")
    refused = call(openapi, "POST", "/api/v1/pools/", deployer_token, body={"name": "cpu"}, media_type="application/json")
    unknown = call(openapi, "GET", "/api/v1/tokens/", "sy_nope_nope")
    assert [r.status_code for r in (missing, bad, refused, unknown)] == [404, 400, 403, 401]
    assert "reason" in bad.json()["fields"]


def test_page_past_the_end_is_a_declared_404(openapi, deployer_token):
    response = call(openapi, "GET", "/api/v1/models/", deployer_token, query={"page": 99})
    assert response.status_code == 404


def test_unknown_api_url_is_a_json_404(client):
    """A path the router does not match (such as a non-numeric id) answers in the API's shape."""
    response = client.get("/api/v1/models/abc/labels/")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_page_urls_keep_the_html_404(client):
    assert client.get("/no-such-page/").headers["Content-Type"].startswith("text/html")


def test_path_ids_are_typed(openapi):
    """Generated clients take integers for ids, and fmt is csv or json."""
    paths = openapi.raw_schema["paths"]

    def param(path, method, name):
        return next(p for p in paths[path][method]["parameters"] if p["name"] == name)["schema"]

    assert param("/api/v1/tokens/{id}/", "get", "id")["type"] == "integer"
    assert param("/api/v1/audit/events/export.{fmt}", "get", "fmt")["enum"] == ["csv", "json"]
    assert openapi.raw_schema["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
