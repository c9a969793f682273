from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.accounts.models import ApiToken
from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.registry.models import Model

URL = "/api/v1/models/"


def test_create_model_writes_row_and_audit_event(api, deployer, model_payload):
    response = api(deployer).post(URL, model_payload(), format="json", HTTP_X_REQUEST_ID="req-123")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["triton_name"] == "vision.fraud-scorer"
    assert body["inputs"][0]["data_type"] == "TYPE_FP32"
    model = Model.objects.get(pk=body["id"])
    event = AuditEvent.objects.get(action="model.create")
    assert (event.object_id, event.actor_name, event.source, event.request_id) == (str(model.pk), "dana", "api", "req-123")
    assert event.team_id == model.team_id and event.after["name"] == "fraud-scorer"
    assert response["X-Request-Id"] == "req-123"


def test_duplicate_name_is_a_409_without_writes(api, deployer, model_payload):
    assert api(deployer).post(URL, model_payload(), format="json").status_code == 201
    response = api(deployer).post(URL, model_payload(), format="json")
    assert response.status_code == 409
    assert "name" in response.json()["fields"]
    assert Model.objects.count() == 1
    assert AuditEvent.objects.filter(action="model.create").count() == 1


@pytest.mark.parametrize("name", ["fraud scorer", "Fraud-Scorer", "x" * 200, "-leading", "trailing-", "", "a.b"])
def test_bad_names_are_400_naming_the_field(api, deployer, model_payload, name):
    response = api(deployer).post(URL, model_payload(name=name), format="json")
    assert response.status_code == 400
    assert "name" in response.json()["fields"]
    assert not Model.objects.exists() and not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"backend": "caffe"}, "backend"),
        ({"max_batch_size": -1}, "max_batch_size"),
        ({"max_batch_size": "many"}, "max_batch_size"),
        ({"inputs": [{"name": "x", "data_type": "TYPE_FP32", "dims": [0]}]}, "inputs[0].dims"),
        ({"outputs": []}, "outputs"),
        ({"team": "speech"}, "team"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_fields_are_400(api, deployer, model_payload, other_team, overrides, field):
    response = api(deployer).post(URL, model_payload(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"]
    assert not Model.objects.exists()


def test_malformed_json_is_400(api, deployer):
    response = api(deployer).post(URL, data='{"name": "x",', content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert "body" in body["fields"] and "JSON" in body["detail"]


def test_viewer_may_not_create(api, viewer, model_payload):
    response = api(viewer).post(URL, model_payload(), format="json")
    assert response.status_code == 403
    assert "deployer" in response.json()["detail"]
    assert not Model.objects.exists()


def test_other_teams_models_are_invisible(api, model, outsider, deployer):
    assert api(outsider).get(f"{URL}{model.pk}/").status_code == 404
    assert api(outsider).get(URL).json()["count"] == 0
    assert api(deployer).get(f"{URL}{model.pk}/").status_code == 200


def test_anonymous_is_401(api, model):
    assert api().get(URL).status_code in (401, 403)
    assert api().get(URL).json()["detail"]


def test_list_filters_and_paginates(api, deployer, model_payload):
    client = api(deployer)
    for i in range(3):
        assert client.post(URL, model_payload(name=f"m{i}", backend="onnxruntime" if i else "python"), format="json").status_code == 201
    assert client.get(URL, {"backend": "onnxruntime"}).json()["count"] == 2
    assert [m["name"] for m in client.get(URL, {"q": "m1"}).json()["results"]] == ["m1"]
    page = client.get(URL, {"page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


def test_bearer_token_auth(api, deployer, model):
    token, secret = token_create(
        actor=Actor(user=deployer, source="api"), user=deployer, name="ci", scopes=["read"],
        expires_at=timezone.now() + timedelta(days=1),
    )
    stored = ApiToken.objects.get(pk=token.pk)
    assert secret not in (stored.secret_hash, stored.prefix) and secret.startswith(f"sy_{stored.prefix}_")
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get(URL).json()["count"] == 1
    stored.refresh_from_db()
    assert stored.last_used_at is not None and stored.last_used_ip == "127.0.0.1"

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}x")
    assert client.get(URL).status_code == 401

    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = client.get(URL)
    assert response.status_code == 401 and "expired" in response.json()["detail"]

    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    response = client.get(URL)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
