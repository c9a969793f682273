import pytest

from controlplane.accounts.models import Membership, Role
from controlplane.audit.models import AuditEvent
from tests.conftest import _user


def members(api, user):
    return {m["username"]: m["role"] for m in api(user).get("/api/v1/teams/vision/members/").json()}


def test_team_admin_adds_changes_and_removes_members(api, team_admin, viewer):
    newcomer = _user("nia")
    client = api(team_admin)
    response = client.post("/api/v1/teams/vision/members/", {"username": "nia", "role": "deployer"}, format="json")
    assert response.status_code == 201, response.json()
    assert members(api, team_admin) == {"ada": "admin", "nia": "deployer", "vic": "viewer"}
    assert client.patch("/api/v1/teams/vision/members/nia/", {"role": "viewer"}, format="json").status_code == 200
    assert client.delete("/api/v1/teams/vision/members/nia/").status_code == 204
    assert not Membership.objects.filter(user=newcomer).exists()
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "before", "after"))
    assert actions == [
        ("membership.set", None, {"user": "nia", "role": "deployer"}),
        ("membership.set", {"user": "nia", "role": "deployer"}, {"user": "nia", "role": "viewer"}),
        ("membership.remove", {"user": "nia", "role": "viewer"}, None),
    ]


def test_the_last_admin_cannot_leave_or_be_demoted(api, team_admin):
    client = api(team_admin)
    response = client.patch("/api/v1/teams/vision/members/ada/", {"role": "viewer"}, format="json")
    assert response.status_code == 409 and "last admin" in response.json()["detail"]
    assert client.delete("/api/v1/teams/vision/members/ada/").status_code == 409
    assert Membership.objects.get(user=team_admin).role == Role.ADMIN


@pytest.mark.parametrize(
    "payload, field",
    [({"username": "ghost", "role": "viewer"}, "username"), ({"username": "vic", "role": "owner"}, "role"), ({"username": "vic"}, "role")],
)
def test_bad_member_input(api, team_admin, viewer, payload, field):
    response = api(team_admin).post("/api/v1/teams/vision/members/", payload, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]
    assert Membership.objects.get(user=viewer).role == Role.VIEWER


def test_non_admins_cannot_manage_members(api, deployer, outsider, viewer):
    assert api(deployer).post("/api/v1/teams/vision/members/", {"username": "vic", "role": "admin"}, format="json").status_code == 403
    assert api(outsider).post("/api/v1/teams/vision/members/", {"username": "vic", "role": "admin"}, format="json").status_code == 404
    assert api(outsider).get("/api/v1/teams/vision/members/").status_code == 404
    assert Membership.objects.get(user=viewer).role == Role.VIEWER


@pytest.mark.parametrize("slug", ["speech", "no-such-team"])
def test_a_team_you_cannot_see_is_404_in_the_path_and_400_in_a_field_in_ui_and_api(api, client, team_admin, other_team, slug):
    """Decided in issue 8: the URL names an object (404, as for any object of another team); a
    form field or body names an input (400 naming the field). Unknown and foreign teams alike."""
    from controlplane.accounts.models import ApiToken

    body = {"username": "ada", "role": "viewer"}
    assert api(team_admin).post(f"/api/v1/teams/{slug}/members/", body, format="json").status_code == 404
    client.force_login(team_admin)
    assert client.post(f"/team/{slug}/members/", body).status_code == 404

    refused = api(team_admin).post("/api/v1/tokens/", {"name": "ci", "scopes": ["read"], "team": slug}, format="json")
    assert refused.status_code == 400 and list(refused.json()["fields"]) == ["team"]
    page = client.post("/team/tokens/", {"name": "ci", "scopes": ["read"], "expires_in_days": 9, "team": slug})
    assert page.status_code == 400 and "team: " + refused.json()["fields"]["team"][0].replace("'", "&#x27;") in page.content.decode()
    assert not ApiToken.objects.exists() and not AuditEvent.objects.exists()
