"""/api/v1/webhooks/: team admins' CRUD, the secret shown once, strict field-named 400s, other
teams' webhooks as 404, the delivery log and the test send."""
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.notifications import services
from controlplane.notifications.models import Webhook, WebhookDelivery
from tests.notifications.conftest import events, make_webhook

URL = "/api/v1/webhooks/"
HOOK = "https://hooks.slack.com/services/T000/B000/XXXX"


def test_create_answers_201_with_the_secret_once(api, team_admin, endpoint):
    response = api(team_admin).post(URL, {"team": "vision", "url": HOOK, "endpoint": endpoint.pk, "events": ["failed", "rolled_back"],
                                          "name": "#ml-deploys"}, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    webhook = Webhook.objects.get()
    assert data["secret"] == webhook.secret and data["secret"].startswith("whsec_")
    assert {k: data[k] for k in ("id", "team", "endpoint", "endpoint_name", "name", "url", "events", "active", "created_by")} == {
        "id": webhook.pk, "team": "vision", "endpoint": endpoint.pk, "endpoint_name": "vision.fraud", "name": "#ml-deploys",
        "url": HOOK, "events": ["rolled_back", "failed"], "active": True, "created_by": "ada"}
    assert events("webhook.create")[0].source == "api"
    # never again: not in the list, the object, an update, the audit log
    client = api(team_admin)
    for body in (client.get(URL).json()["results"][0], client.get(f"{URL}{webhook.pk}/").json(),
                 client.patch(f"{URL}{webhook.pk}/", {"active": False}, format="json").json()):
        assert "secret" not in body and data["secret"] not in str(body)
    assert all(data["secret"] not in str(e.before) + str(e.after) for e in events())


def test_list_shows_only_the_callers_admin_teams(api, team_admin, as_admin, team, other_team, other_admin, deployer):
    mine, _ = make_webhook(as_admin, team)
    theirs, _ = make_webhook(Actor(user=other_admin, source="api"), other_team)
    assert [w["id"] for w in api(team_admin).get(URL).json()["results"]] == [mine.pk]
    assert [w["id"] for w in api(other_admin).get(URL).json()["results"]] == [theirs.pk]
    assert api(deployer).get(URL).json()["results"] == []  # webhook URLs can be credentials: admins only


def test_another_teams_webhook_is_a_404_for_every_operation(api, as_admin, team, other_admin, deployer):
    webhook, _ = make_webhook(as_admin, team)
    for user in (other_admin, deployer):
        client = api(user)
        for method, path, body in [("get", f"{URL}{webhook.pk}/", None), ("patch", f"{URL}{webhook.pk}/", {"active": False}),
                                   ("delete", f"{URL}{webhook.pk}/", None), ("post", f"{URL}{webhook.pk}/test/", None),
                                   ("get", f"{URL}{webhook.pk}/deliveries/", None)]:
            response = getattr(client, method)(path, body, format="json")
            assert response.status_code == 404, (user, method, path)
    webhook.refresh_from_db()
    assert webhook.active and not WebhookDelivery.objects.exists() and events("webhook.update") == []


def test_a_deployer_may_not_create_one(api, deployer):
    response = api(deployer).post(URL, {"team": "vision", "url": HOOK}, format="json")
    assert response.status_code == 403 and "admin role" in response.json()["detail"]
    assert not Webhook.objects.exists()


def test_an_unknown_or_foreign_team_is_a_400_naming_team(api, team_admin, other_team):
    for slug in ("speech", "nope"):
        response = api(team_admin).post(URL, {"team": slug, "url": HOOK}, format="json")
        assert response.status_code == 400 and set(response.json()["fields"]) == {"team"}


@pytest.mark.parametrize("overrides, field", [
    ({"url": "ftp://example.com/"}, "url"),
    ({"url": "https://user:pw@example.com/"}, "url"),
    ({"url": 7}, "url"),
    ({"url": ["https://example.com/"]}, "url"),
    ({"url": "https://" + "a" * 2001}, "url"),
    ({"events": []}, "events"),
    ({"events": ["deployed"]}, "events[0]"),
    ({"events": "failed"}, "events"),
    ({"events": ["failed", 1]}, "events[1]"),
    ({"endpoint": "1"}, "endpoint"),
    ({"endpoint": 1.0}, "endpoint"),
    ({"endpoint": 2**63}, "endpoint"),
    ({"endpoint": 987654}, "endpoint"),
    ({"active": "yes"}, "active"),
    ({"active": 1}, "active"),
    ({"name": 5}, "name"),
    ({"name": "n" * 101}, "name"),
    ({"secret": "whsec_mine"}, "secret"),
    ({"unknown": 1}, "unknown"),
])
def test_bad_input_is_a_400_naming_the_field(api, team_admin, endpoint, overrides, field):
    response = api(team_admin).post(URL, {"team": "vision", "url": HOOK, **overrides}, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert field in body["fields"] and body["detail"].startswith(field)
    assert not Webhook.objects.exists() and events() == []


def test_a_foreign_endpoint_is_a_400_that_does_not_say_whose(api, team_admin, foreign_endpoint):
    response = api(team_admin).post(URL, {"team": "vision", "url": HOOK, "endpoint": foreign_endpoint.pk}, format="json")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"endpoint"}
    assert "speech" not in response.json()["detail"]


def test_a_missing_url_or_team_is_required(api, team_admin):
    response = api(team_admin).post(URL, {}, format="json")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"team", "url"}


def test_patch_changes_some_fields_and_null_endpoint_means_all(api, team_admin, as_admin, team, endpoint):
    webhook, _ = make_webhook(as_admin, team, endpoint=endpoint)
    response = api(team_admin).patch(f"{URL}{webhook.pk}/", {"endpoint": None, "events": ["succeeded"]}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["endpoint"], response.json()["endpoint_name"], response.json()["events"]) == (None, None, ["succeeded"])
    [event] = events("webhook.update")
    assert (event.before["endpoint"], event.after["endpoint"]) == ("vision.fraud", None)
    response = api(team_admin).patch(f"{URL}{webhook.pk}/", {"team": "speech"}, format="json")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"team"}
    response = api(team_admin).patch(f"{URL}{webhook.pk}/", {"url": "gopher://x"}, format="json")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"url"}
    assert len(events("webhook.update")) == 1


def test_delete_answers_204_and_audits(api, team_admin, as_admin, team):
    webhook, _ = make_webhook(as_admin, team)
    assert api(team_admin).delete(f"{URL}{webhook.pk}/").status_code == 204
    assert not Webhook.objects.exists() and len(events("webhook.delete")) == 1


def test_the_test_action_queues_a_test_delivery(api, team_admin, as_admin, team, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("controlplane.common.tasks._send", lambda name, args, kwargs, countdown=None: sent.append((name, args)))
    webhook, _ = make_webhook(as_admin, team)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(team_admin).post(f"{URL}{webhook.pk}/test/")
    assert response.status_code == 202, response.json()
    data = response.json()
    assert (data["event"], data["status"], data["attempts"], data["log"]) == ("test", "pending", 0, [])
    assert sent == [("notifications.deliver", (data["id"],))]


def test_the_delivery_log_is_newest_first_and_paginated(api, team_admin, as_admin, team):
    webhook, _ = make_webhook(as_admin, team)
    made = [services.notify(team=team, event=e, title=f"deployment {i}", fields={"deployment": i})[0]
            for i, e in enumerate(["started", "paused", "succeeded"])]
    WebhookDelivery.objects.filter(pk=made[0].pk).update(
        status="failed", attempts=1, last_status_code=500, last_error="HTTP 500",
        log=[{"attempt": 1, "at": timezone.now().isoformat(), "status_code": 500, "error": "HTTP 500", "duration_ms": 3}])
    response = api(team_admin).get(f"{URL}{webhook.pk}/deliveries/", {"page_size": 2})
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 3 and [d["event"] for d in data["results"]] == ["succeeded", "paused"]
    older = api(team_admin).get(data["next"]).json()["results"]
    assert [d["id"] for d in older] == [made[0].pk]
    assert older[0]["log"][0]["status_code"] == 500 and older[0]["payload"]["switchyard"]["deployment"] == 0
    assert [d["event"] for d in api(team_admin).get(f"{URL}{webhook.pk}/deliveries/", {"status": "failed"}).json()["results"]] == ["started"]
    one = api(team_admin).get(f"{URL}{webhook.pk}/deliveries/{made[1].pk}/")
    assert one.status_code == 200 and one.json()["event"] == "paused"


def test_a_token_needs_the_admin_scope_even_to_read(api, team_admin, as_admin, team):
    webhook, _ = make_webhook(as_admin, team)
    for scope, code in (("read", 403), ("deploy", 403), ("admin", 200)):
        _, secret = token_create(actor=as_admin, user=team_admin, name=f"t-{scope}", scopes=[scope],
                                 expires_at=timezone.now() + timedelta(days=1))
        client = api()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        response = client.get(f"{URL}{webhook.pk}/")
        assert response.status_code == code, (scope, response.json())
        if code == 403:
            assert "admin scope" in response.json()["detail"]


def test_list_query_count_does_not_grow(api, team_admin, as_admin, team, endpoint, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_webhook(as_admin, team, endpoint=endpoint)
    client = api(team_admin)
    with CaptureQueriesContext(connection) as few:
        client.get(URL)
    for _ in range(5):
        make_webhook(as_admin, team, endpoint=endpoint)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(URL).json()["results"]) == 6
    assert len(many) == len(few)
