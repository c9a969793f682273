import pytest
from django.core.cache import cache

from controlplane.accounts import throttle
from controlplane.accounts.models import ApiToken, Membership, Role
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


def test_team_page_member_forms_and_errors(client, team, viewer):
    admin = _user("ada")
    Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
    _user("nia")
    client.force_login(admin)
    response = client.post("/team/vision/members/", {"username": "nia", "role": "deployer"}, follow=True)
    assert b"nia is now deployer in vision" in response.content
    assert Membership.objects.get(user__username="nia").role == Role.DEPLOYER
    response = client.post("/team/vision/members/", {"username": "ghost", "role": "viewer"}, follow=True)
    assert b"username: No active user named" in response.content
    response = client.post("/team/vision/members/ada/role/", {"role": "viewer"}, follow=True)
    assert b"last admin" in response.content and Membership.objects.get(user=admin).role == Role.ADMIN
    client.post("/team/vision/members/vic/remove/")
    assert not Membership.objects.filter(user=viewer).exists()


def test_viewers_see_no_admin_forms(client, viewer):
    client.force_login(viewer)
    html = client.get("/team/").content.decode()
    assert "Add member" not in html and "Issue team token" not in html and "Issue personal token" in html
    response = client.post("/team/vision/members/", {"username": "vic", "role": "admin"}, follow=True)
    assert b"needs the admin role" in response.content
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
