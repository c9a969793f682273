"""Tokens issued through tokens: no hidden personal tokens for service accounts, and revocation
reaches everything a token issued (issue 7, item 2)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.accounts import services
from controlplane.accounts.models import ApiToken, Membership, Role
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from tests.accounts.test_tokens import bearer

URL = "/api/v1/tokens/"
BACKDOOR = {"name": "persist", "scopes": ["admin"], "expires_in_days": 366}


@pytest.fixture
def team_token(api, team_admin):
    body = api(team_admin).post(URL, {"name": "ci-admin", "scopes": ["admin"], "team": "vision"}, format="json").json()
    return ApiToken.objects.get(pk=body["id"]), body["secret"]


def test_a_token_issued_through_a_team_token_is_a_team_token_the_admins_see(api, team_admin, team, team_token):
    parent, secret = team_token
    response = bearer(api, secret).post(URL, BACKDOOR, format="json")
    assert response.status_code == 201, response.json()
    child = ApiToken.objects.get(pk=response.json()["id"])
    assert response.json()["team"] == "vision"
    assert (child.team_id, child.issued_by_id) == (team.pk, parent.pk)
    listed = {t["prefix"] for t in api(team_admin).get(URL).json()["results"]}
    assert child.prefix in listed
    event = AuditEvent.objects.get(action="token.create", object_id=str(child.pk))
    assert event.team_id == team.pk and event.token_id == parent.pk
    team_history = api(team_admin).get("/api/v1/audit/events/", {"team": "vision", "action": "token.create"}).json()
    assert str(child.pk) in {e["object_id"] for e in team_history["results"]}


def test_revoking_a_team_token_revokes_what_was_issued_through_it(api, team_admin, team, team_token, model_payload):
    parent, secret = team_token
    child_secret = bearer(api, secret).post(URL, BACKDOOR, format="json").json()["secret"]
    grandchild_secret = bearer(api, child_secret).post(URL, {**BACKDOOR, "name": "deeper"}, format="json").json()["secret"]
    assert bearer(api, grandchild_secret).get("/api/v1/models/").status_code == 200

    revoked = api(team_admin).post(f"{URL}{parent.pk}/revoke/")
    assert revoked.status_code == 200, revoked.json()
    for leftover in (secret, child_secret, grandchild_secret):
        denied = bearer(api, leftover).post("/api/v1/teams/vision/members/", {"username": "ada", "role": "admin"}, format="json")
        assert denied.status_code == 401 and "revoked" in denied.json()["detail"]
    events = AuditEvent.objects.filter(action="token.revoke").order_by("id")
    assert events.count() == 3 and {e.team_id for e in events} == {team.pk}
    assert parent.prefix in events[1].reason and parent.prefix in events[2].reason


def test_a_service_account_gets_no_personal_token_from_the_service_either(team, team_admin):
    _, _ = services.token_create(
        actor=Actor(user=team_admin, source="ui"), team=team, name="seed", scopes=["read"],
        expires_at=timezone.now() + timedelta(days=1),
    )
    team.refresh_from_db()
    token, _ = services.token_create(
        actor=Actor.system(), user=team.service_user, name="cmd", scopes=["read"], expires_at=timezone.now() + timedelta(days=1)
    )
    assert token.team_id == team.pk
    assert not ApiToken.objects.filter(user=team.service_user, team__isnull=True).exists()


def test_a_team_token_cannot_issue_for_another_team(api, team_token, other_team):
    _, secret = team_token
    response = bearer(api, secret).post(URL, {**BACKDOOR, "team": "speech"}, format="json")
    unknown = bearer(api, secret).post(URL, {**BACKDOOR, "team": "no-such-team"}, format="json")
    assert response.status_code == unknown.status_code == 400 and "team" in response.json()["fields"]
    assert response.json()["fields"]["team"][0].replace("speech", "X") == unknown.json()["fields"]["team"][0].replace("no-such-team", "X")
    assert ApiToken.objects.count() == 1


def test_a_personal_token_of_a_service_account_made_before_the_fix_is_refused(api, team, team_token):
    """Such tokens exist in databases that ran the old code; the team could not see them."""
    _, secret = team_token
    team.refresh_from_db()
    from controlplane.accounts import tokens

    legacy_secret, prefix, secret_hash = tokens.generate()
    ApiToken.objects.create(user=team.service_user, team=None, name="old", prefix=prefix, secret_hash=secret_hash,
                            scopes=["admin"], expires_at=timezone.now() + timedelta(days=30))
    response = bearer(api, legacy_secret).get("/api/v1/models/")
    assert response.status_code == 401 and "service account" in response.json()["detail"]
    assert bearer(api, secret).get("/api/v1/models/").status_code == 200


def test_a_personal_token_issued_through_a_personal_token_is_revoked_with_it(api, deployer):
    body = api(deployer).post(URL, {"name": "laptop", "scopes": ["deploy"]}, format="json").json()
    Membership.objects.filter(user=deployer).update(role=Role.ADMIN)
    admin = api(deployer).post(URL, {"name": "root", "scopes": ["admin"]}, format="json").json()
    child = bearer(api, admin["secret"]).post(URL, {"name": "child", "scopes": ["read"]}, format="json").json()
    assert child["owner"] == "dana" and child["team"] is None
    assert api(deployer).post(f"{URL}{admin['id']}/revoke/").status_code == 200
    assert bearer(api, child["secret"]).get("/api/v1/models/").status_code == 401
    assert bearer(api, body["secret"]).get("/api/v1/models/").status_code == 200
