import re

import pytest
from django.core.cache import cache

from controlplane.accounts import throttle
from controlplane.accounts.models import ApiToken, Membership, Role
from controlplane.audit.models import AuditEvent
from tests.conftest import PASSWORD, _user


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


def test_login_is_throttled_per_user_and_ip(client, deployer):
    for _ in range(throttle.LIMIT_PER_USER_IP):
        response = client.post("/login/", {"username": "dana", "password": "wrong"})
        assert response.status_code == 200 and b"did not match" in response.content
    response = client.post("/login/", {"username": "dana", "password": PASSWORD})
    assert response.status_code == 429 and b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session
    other = client.post("/login/", {"username": "someone-else", "password": "wrong"})
    assert other.status_code == 200  # other names from this address are counted separately


def test_successful_login_resets_the_count(client, deployer):
    for _ in range(throttle.LIMIT_PER_USER_IP - 1):
        client.post("/login/", {"username": "dana", "password": "wrong"})
    assert client.post("/login/", {"username": "dana", "password": PASSWORD}).status_code == 302
    client.logout()
    for _ in range(throttle.LIMIT_PER_USER_IP - 1):
        assert client.post("/login/", {"username": "dana", "password": "wrong"}).status_code == 200
    assert client.post("/login/", {"username": "dana", "password": PASSWORD}).status_code == 302


def test_ui_forms_need_csrf(deployer):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(deployer)
    assert strict.post("/team/tokens/", {"name": "x", "scopes": ["read"], "expires_in_days": 9}).status_code == 403
    assert not ApiToken.objects.exists()


def test_team_page_issues_a_token_once(client, team):
    admin = _user("ada")
    Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
    client.force_login(admin)
    response = client.post("/team/tokens/", {"name": "ci", "scopes": ["read", "deploy"], "expires_in_days": 30, "team": "vision"})
    assert response.status_code == 201
    token = ApiToken.objects.get()
    html = response.content.decode()
    secret = html.split('id="new-token-secret">')[1].split("<")[0]
    assert secret.startswith(f"sy_{token.prefix}_") and token.team == team
    again = client.get("/team/").content.decode()
    assert token.prefix in again and secret not in again


def field_errors(html: str, field_id: str) -> list[str]:
    """The errors in the errorlist right after the field ``field_id``, which is marked invalid."""
    field = re.search(rf'<(?:input|select)[^>]*id="{field_id}"[^>]*>', html)
    assert field, f"no field {field_id}"
    assert 'aria-invalid="true"' in field.group(0) and f'aria-describedby="{field_id}_error"' in field.group(0)
    after = html[field.end():]
    if field.group(0).startswith("<select"):
        after = after[after.index("</select>") + len("</select>"):]
    errors = re.match(rf'\s*<ul class="errorlist" id="{field_id}_error">(.*?)</ul>', after, re.S)
    assert errors, f"no errorlist right after {field_id}"
    return re.findall(r"<li>(.*?)</li>", errors.group(1))


def test_team_page_member_forms_and_errors(client, team, viewer):
    admin = _user("ada")
    Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
    _user("nia")
    client.force_login(admin)
    response = client.post("/team/vision/members/", {"username": "nia", "role": "deployer"}, follow=True)
    assert b"nia is now deployer in vision" in response.content
    assert Membership.objects.get(user__username="nia").role == Role.DEPLOYER
    events = AuditEvent.objects.count()
    response = client.post("/team/vision/members/", {"username": "ghost", "role": "viewer"})
    assert response.status_code == 400
    html = response.content.decode()
    assert field_errors(html, "vision-member-username") == ["No active user named &#x27;ghost&#x27;."]
    assert 'value="ghost"' in html  # what was typed stays
    response = client.post("/team/vision/members/", {"username": "vic", "role": "owner"})
    assert response.status_code == 400 and "owner is not one of the available choices" in field_errors(
        response.content.decode(), "vision-member-role")[0]
    response = client.post("/team/vision/members/ada/role/", {"role": "viewer"})
    assert response.status_code == 409
    row = response.content.decode().split('data-member="ada"')[1].split("</tr>")[0]
    assert 'aria-invalid="true"' in row and '<ul class="errorlist" id="member-vision-ada-errors" role="alert"><li>ada is the last admin' in row
    assert Membership.objects.get(user=admin).role == Role.ADMIN
    assert Membership.objects.get(user=viewer).role == Role.VIEWER and AuditEvent.objects.count() == events
    client.post("/team/vision/members/vic/remove/")
    assert not Membership.objects.filter(user=viewer).exists()


def test_a_refused_token_shows_its_errors_in_its_own_form(client, team, other_team):
    admin = _user("ada")
    Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
    client.force_login(admin)
    response = client.post("/team/tokens/", {"name": "", "scopes": ["bogus"], "expires_in_days": 999, "team": "vision"})
    assert response.status_code == 400
    html = response.content.decode()
    vision = html.split('class="card team-section" data-team="vision"')[1].split("Your personal tokens")[0]
    assert field_errors(vision, "vision-token-name") == ["This field is required."]
    assert field_errors(vision, "vision-token-expires_in_days") == ["Ensure this value is less than or equal to 366."]
    assert 'id="vision-token-scopes_error"' in vision
    personal = html.split("Your personal tokens")[1]
    assert "errorlist" not in personal
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("slug", ["speech", "no-such-team"])
def test_a_team_named_in_the_token_form_that_is_not_yours_is_a_field_error(client, team, other_team, slug):
    """Decided in issue 8: a team named in a form field (not the URL) is a 400 naming the field, as in the API."""
    admin = _user("ada")
    Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
    client.force_login(admin)
    response = client.post("/team/tokens/", {"name": "ci", "scopes": ["read"], "expires_in_days": 9, "team": slug})
    assert response.status_code == 400
    html = response.content.decode()
    # no form of the page names that team, so the error heads the page, naming the field
    alert = html.split('<div class="messages" role="alert">')[1].split("</div>")[0]
    assert f"team: No team named &#x27;{slug}&#x27; among your teams." in alert
    assert not ApiToken.objects.exists() and not AuditEvent.objects.filter(action="token.create").exists()


def test_viewers_see_no_admin_forms(client, viewer):
    client.force_login(viewer)
    html = client.get("/team/").content.decode()
    assert "Add member" not in html and "Issue team token" not in html and "Issue personal token" in html
    response = client.post("/team/vision/members/", {"username": "vic", "role": "admin"})
    assert response.status_code == 403
    alert = response.content.decode().split('<div class="messages" role="alert">')[1].split("</div>")[0]
    assert "needs the admin role" in alert
    assert Membership.objects.get(user=viewer).role == Role.VIEWER


def test_team_page_shows_the_teams_own_history(client, team, viewer):
    from controlplane.accounts.services import membership_set
    from controlplane.audit.context import Actor

    admin = _user("ada")
    Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
    membership_set(actor=Actor(user=admin, source="ui"), team=team, user=viewer, role=Role.DEPLOYER)
    client.force_login(viewer)
    html = client.get("/team/").content.decode()
    history = html.split('id="history-title-')[1]
    assert "membership.set" in history and "ada" in history


@pytest.mark.parametrize("variant", [" dana", "dana ", "\u3000dana", "ｄａｎａ", "DANA", "Ｄａｎａ "])
def test_spelling_the_name_differently_does_not_buy_fresh_guesses(client, deployer, variant):
    for _ in range(throttle.LIMIT_PER_USER_IP):
        client.post("/login/", {"username": "dana", "password": "wrong"})
    response = client.post("/login/", {"username": variant, "password": PASSWORD})
    assert response.status_code == 429 and "_auth_user_id" not in client.session


def test_variants_count_towards_the_same_name(client, deployer):
    for variant in [" dana", "ｄａｎａ", "dana ", "DANA", "dana"]:
        client.post("/login/", {"username": variant, "password": "wrong"})
    assert client.post("/login/", {"username": "dana", "password": PASSWORD}).status_code == 429


def test_the_admin_login_is_throttled_too(client, platform_admin):
    for _ in range(throttle.LIMIT_PER_USER_IP):
        response = client.post("/admin/login/", {"username": "pat", "password": "wrong"})
        assert response.status_code == 200 and "_auth_user_id" not in client.session
    client.post("/admin/login/", {"username": " pat", "password": PASSWORD, "next": "/admin/"})
    assert "_auth_user_id" not in client.session
    assert client.post("/login/", {"username": "pat", "password": PASSWORD}).status_code == 429


def test_the_admin_login_counts_towards_the_ui_login(client, platform_admin):
    for _ in range(throttle.LIMIT_PER_USER_IP - 1):
        client.post("/admin/login/", {"username": "pat", "password": "wrong"})
    client.post("/login/", {"username": "pat", "password": "wrong"})
    assert client.post("/login/", {"username": "pat", "password": PASSWORD}).status_code == 429
