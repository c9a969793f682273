from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.accounts.models import ApiToken, Membership, Role
from controlplane.accounts.tokens import hash_token
from controlplane.audit.models import AuditEvent
from controlplane.registry.models import Model

URL = "/api/v1/tokens/"


def bearer(api, secret, cli=False):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}", **({"HTTP_X_SWITCHYARD_CLIENT": "cli"} if cli else {}))
    return client


def test_personal_token_is_shown_once_and_stored_hashed(api, deployer):
    response = api(deployer).post(URL, {"name": "laptop", "scopes": ["read", "deploy"], "expires_in_days": 30}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    token = ApiToken.objects.get(pk=body["id"])
    assert body["secret"].startswith(f"sy_{token.prefix}_")
    assert token.secret_hash == hash_token(body["secret"]) and body["secret"] not in token.secret_hash
    listed = api(deployer).get(URL).json()["results"]
    assert [t["prefix"] for t in listed] == [token.prefix] and "secret" not in listed[0]
    event = AuditEvent.objects.get(action="token.create")
    assert body["secret"] not in str(event.after) and body["secret"].split("_")[-1] not in str(event.after)


def test_team_token_acts_as_the_team_service_account(api, team_admin, team, model_payload):
    response = api(team_admin).post(URL, {"name": "github", "scopes": ["deploy"], "team": "vision"}, format="json")
    assert response.status_code == 201, response.json()
    secret = response.json()["secret"]
    assert response.json()["owner"] == "svc.vision" and response.json()["team"] == "vision"
    ci = bearer(api, secret, cli=True)
    created = ci.post("/api/v1/models/", model_payload(), format="json")
    assert created.status_code == 201, created.json()
    event = AuditEvent.objects.get(action="model.create")
    assert (event.actor_name, event.source, event.token_id) == ("svc.vision", "cli", response.json()["id"])
    # the service account is not a member to manage
    members = api(team_admin).get("/api/v1/teams/vision/members/").json()
    assert [m["username"] for m in members] == ["ada"]


def test_scopes_limit_what_a_token_may_do(api, deployer, model_payload):
    secret = api(deployer).post(URL, {"name": "ro", "scopes": ["read"]}, format="json").json()["secret"]
    client = bearer(api, secret)
    assert client.get("/api/v1/models/").status_code == 200
    response = client.post("/api/v1/models/", model_payload(), format="json")
    assert response.status_code == 403
    assert "scope" in response.json()["detail"] and "deploy" in response.json()["detail"]
    assert not Model.objects.exists()


@pytest.mark.parametrize(
    "user_fixture, payload, status",
    [
        ("viewer", {"name": "x", "scopes": ["deploy"]}, 403),  # beyond a viewer's role
        ("deployer", {"name": "x", "scopes": ["admin"]}, 403),
        ("deployer", {"name": "x", "scopes": ["read"], "team": "vision"}, 403),  # team tokens: team admins only
        ("outsider", {"name": "x", "scopes": ["read"], "team": "vision"}, 400),  # not their team: not even named
        ("deployer", {"name": "", "scopes": ["read"]}, 400),
        ("deployer", {"name": "x", "scopes": []}, 400),
        ("deployer", {"name": "x", "scopes": ["root"]}, 400),
        ("deployer", {"name": "x", "scopes": ["read"], "expires_in_days": 0}, 400),
        ("deployer", {"name": "x", "scopes": ["read"], "expires_in_days": 1000}, 400),
        ("deployer", {"name": "x", "scopes": ["read"], "owner": "pat"}, 400),
    ],
)
def test_refused_tokens(api, request, user_fixture, payload, status):
    response = api(request.getfixturevalue(user_fixture)).post(URL, payload, format="json")
    assert response.status_code == status, response.json()
    assert not ApiToken.objects.exists() and not AuditEvent.objects.filter(action="token.create").exists()


def test_revoke_and_expiry_answer_401_saying_which(api, deployer, outsider):
    body = api(deployer).post(URL, {"name": "ci", "scopes": ["read"]}, format="json").json()
    client = bearer(api, body["secret"])
    assert client.get("/api/v1/models/").status_code == 200
    assert api(outsider).post(f"{URL}{body['id']}/revoke/").status_code == 404
    revoked = api(deployer).post(f"{URL}{body['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert api(deployer).post(f"{URL}{body['id']}/revoke/").status_code == 200  # idempotent
    assert AuditEvent.objects.filter(action="token.revoke").count() == 1
    response = client.get("/api/v1/models/")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]

    other = api(deployer).post(URL, {"name": "old", "scopes": ["read"]}, format="json").json()
    ApiToken.objects.filter(pk=other["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(api, other["secret"]).get("/api/v1/models/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    assert bearer(api, "sy_nope_nope").get("/api/v1/models/").status_code == 401


def test_token_keeps_to_its_owners_current_role(api, team_admin, deployer, model_payload):
    """A token never grants more than its owner has now: a demoted owner's token loses rights too."""
    secret = api(deployer).post(URL, {"name": "ci", "scopes": ["deploy"]}, format="json").json()["secret"]
    Membership.objects.filter(user=deployer).update(role=Role.VIEWER)
    response = bearer(api, secret).post("/api/v1/models/", model_payload(), format="json")
    assert response.status_code == 403 and not Model.objects.exists()


def test_a_read_only_token_cannot_mint_or_revoke_tokens(api, team_admin):
    """Managing tokens through a token needs the admin scope, whatever the owner's role."""
    owner = api(team_admin)
    read = owner.post(URL, {"name": "ro", "scopes": ["read"]}, format="json").json()
    client = bearer(api, read["secret"])
    minted = client.post(URL, {"name": "escalate", "scopes": ["admin"]}, format="json")
    assert minted.status_code == 403 and "admin scope" in minted.json()["detail"]
    assert client.post(f"{URL}{read['id']}/revoke/").status_code == 403
    assert list(ApiToken.objects.values_list("name", flat=True)) == ["ro"]
    admin_token = owner.post(URL, {"name": "adm", "scopes": ["admin"]}, format="json").json()
    assert bearer(api, admin_token["secret"]).post(URL, {"name": "ci", "scopes": ["deploy"]}, format="json").status_code == 201
