"""The infer scope: the data plane's alone. Any member may hold it; it is outside the REST API's
read < deploy < admin ranking, so an infer-only token is refused by the REST API (403) and no REST
scope implies infer."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from controlplane.accounts import services
from controlplane.accounts.access import require_scope
from controlplane.accounts.forms import TokenIssueForm
from controlplane.accounts.models import ApiToken, Scope
from controlplane.audit.context import Actor
from tests.accounts.test_tokens import bearer

URL = "/api/v1/tokens/"


def issue(user, scopes, **extra):
    return services.token_create(actor=Actor(user=user, source="api"), user=user, name="t", scopes=scopes,
                                 expires_at=timezone.now() + timedelta(days=1), **extra)


def test_a_viewer_may_hold_infer_and_it_is_stored_first(viewer):
    token, _ = issue(viewer, ["read", "infer"])
    assert token.scopes == ["infer", "read"]
    assert token.max_scope_rank == 1  # infer adds nothing on the REST API


def test_the_api_issues_infer_tokens_personal_and_team(api, viewer, team_admin):
    response = api(viewer).post(URL, {"name": "app", "scopes": ["infer"], "expires_in_days": 30}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["scopes"] == ["infer"]
    response = api(team_admin).post(URL, {"name": "svc", "scopes": ["infer", "deploy"], "team": "vision"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["scopes"] == ["infer", "deploy"]


def test_the_ui_form_offers_and_issues_infer(client, viewer):
    assert "infer" in dict(TokenIssueForm.base_fields["scopes"].choices)
    client.force_login(viewer)
    response = client.post(reverse("token-issue"), {"name": "app", "scopes": ["infer"], "expires_in_days": 7, "team": ""})
    assert response.status_code == 201
    assert ApiToken.objects.get(user=viewer).scopes == ["infer"]


def test_an_infer_only_token_is_refused_by_the_rest_api_with_403(api, viewer, model):
    _, secret = issue(viewer, ["infer"])
    for url in ("/api/v1/models/", "/api/v1/teams/", URL):
        response = bearer(api, secret).get(url)
        assert response.status_code == 403, (url, response.content)
        assert "infer" in response.json()["detail"] and "gateway" in response.json()["detail"]
    assert ApiToken.objects.get(user=viewer).last_used_at is None


def test_infer_beside_a_rest_scope_reads_as_that_scope(api, viewer, model):
    _, secret = issue(viewer, ["infer", "read"])
    assert bearer(api, secret).get("/api/v1/models/").status_code == 200


@pytest.mark.parametrize("held, needed, allowed", [
    (("infer",), Scope.READ, False),
    (("infer", "deploy"), Scope.DEPLOY, True),
    (("infer", "read"), Scope.DEPLOY, False),
])
def test_infer_is_outside_the_rest_ranking(held, needed, allowed):
    from django.core.exceptions import PermissionDenied

    actor = Actor(user=None, source="api", token_scopes=held)
    if allowed:
        require_scope(actor, needed)
    else:
        with pytest.raises(PermissionDenied):
            require_scope(actor, needed)


def test_a_token_with_infer_cannot_exceed_its_owner_role(viewer):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        issue(viewer, ["infer", "deploy"])
