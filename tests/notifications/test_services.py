"""Webhook services: team admins only, audited with the change (never the secret), field-named
refusals, and notify's choice of webhooks."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404

from controlplane.audit.context import Actor
from controlplane.notifications import services
from controlplane.notifications.models import DeliveryStatus, Webhook, WebhookDelivery
from tests.notifications.conftest import events, make_webhook


def test_create_audits_the_webhook_without_its_secret_or_full_url(as_admin, team, endpoint):
    url = "https://hooks.slack.com/services/T000/B000/s3cr3t-path"
    webhook, secret = make_webhook(as_admin, team, url=url, endpoint=endpoint, events=["failed", "rolled_back"], name="#deploys")
    webhook.refresh_from_db()
    assert secret.startswith("whsec_") and webhook.secret == secret  # stored as is: the server signs with it
    assert (webhook.events, webhook.active, webhook.endpoint, webhook.created_by.username) == (["rolled_back", "failed"], True, endpoint, "ada")
    [event] = events("webhook.create")
    assert event.after == {"team": "vision", "endpoint": "vision.fraud", "name": "#deploys", "url": "https://hooks.slack.com/…",
                           "url_sha256": services.url_for_audit(url)["url_sha256"], "events": ["rolled_back", "failed"], "active": True}
    assert (event.team, event.actor_name, event.object_id) == (team, "ada", str(webhook.pk))
    assert secret not in repr(event.before) + repr(event.after) + event.object_repr and "s3cr3t" not in repr(event.after)


def test_events_default_to_all(as_admin, team):
    webhook, _ = make_webhook(as_admin, team)
    assert webhook.events == ["started", "paused", "rolled_back", "succeeded", "failed"]


@pytest.mark.parametrize("who", ["deployer", "viewer"])
def test_members_below_admin_are_refused_and_nothing_is_written(request, team, who):
    actor = Actor(user=request.getfixturevalue(who), source="api")
    with pytest.raises(PermissionDenied, match="admin role"):
        make_webhook(actor, team)
    assert not Webhook.objects.exists() and events() == []


def test_another_teams_admin_gets_a_404(team, other_admin):
    with pytest.raises(Http404):
        make_webhook(Actor(user=other_admin, source="api"), team)


def test_a_token_without_the_admin_scope_is_refused(team_admin, team):
    actor = Actor(user=team_admin, source="api", token_id=1, token_scopes=("deploy",))
    with pytest.raises(PermissionDenied, match="admin scope"):
        make_webhook(actor, team)


def test_refusals_name_every_field_at_once(as_admin, team, foreign_endpoint):
    with pytest.raises(ValidationError) as refused:
        make_webhook(as_admin, team, url="ftp://x", endpoint=foreign_endpoint, events=["deployed"], name="n" * 101, active="yes")
    assert set(refused.value.message_dict) == {"url", "endpoint", "events", "name", "active"}
    assert "speech" not in str(refused.value)  # never says whose endpoint it is
    assert not Webhook.objects.exists() and events() == []


def test_update_audits_before_and_after_and_nothing_changed_writes_nothing(as_admin, team, endpoint):
    webhook, secret = make_webhook(as_admin, team)
    assert services.webhook_update(actor=as_admin, webhook=webhook, events=["failed"], active=True) is True
    assert services.webhook_update(actor=as_admin, webhook=webhook, events=["failed"]) is False
    assert services.webhook_update(actor=as_admin, webhook=webhook, url="http://127.0.0.1:9/other", endpoint=endpoint) is True
    first, second = events("webhook.update")
    assert (first.before["events"], first.after["events"]) == (["started", "paused", "rolled_back", "succeeded", "failed"], ["failed"])
    assert first.before["url_sha256"] != second.after["url_sha256"] and second.after["endpoint"] == "vision.fraud"
    webhook.refresh_from_db()
    assert (webhook.url, webhook.secret, webhook.events) == ("http://127.0.0.1:9/other", secret, ["failed"])


def test_update_refuses_bad_values_naming_the_field(as_admin, team):
    webhook, _ = make_webhook(as_admin, team)
    with pytest.raises(ValidationError) as refused:
        services.webhook_update(actor=as_admin, webhook=webhook, url="javascript:alert(1)")
    assert set(refused.value.message_dict) == {"url"}
    with pytest.raises(ValueError):
        services.webhook_update(actor=as_admin, webhook=webhook, secret="mine")
    assert events("webhook.update") == []


def test_delete_audits_and_takes_the_delivery_log_along(as_admin, team):
    webhook, _ = make_webhook(as_admin, team)
    services.notify(team=team, event="started", title="t", fields={})
    services.webhook_delete(actor=as_admin, webhook=webhook)
    assert not Webhook.objects.exists() and not WebhookDelivery.objects.exists()
    [event] = events("webhook.delete")
    assert event.before["team"] == "vision" and event.after is None


def test_deleting_an_endpoint_deletes_its_webhooks_not_the_team_wide_ones(as_admin, team, endpoint):
    make_webhook(as_admin, team, endpoint=endpoint)
    team_wide, _ = make_webhook(as_admin, team)
    endpoint.delete()
    assert list(Webhook.objects.all()) == [team_wide]


# notify


def test_notify_reaches_team_wide_webhooks_and_the_endpoints_own(as_admin, team, other_team, endpoint, other_endpoint,
                                                                  other_admin, foreign_endpoint):
    team_wide, _ = make_webhook(as_admin, team, name="all")
    this_one, _ = make_webhook(as_admin, team, endpoint=endpoint, name="fraud")
    make_webhook(as_admin, team, endpoint=other_endpoint, name="ranker")
    make_webhook(as_admin, team, events=["succeeded"], name="successes only")
    make_webhook(as_admin, team, active=False, name="off")
    make_webhook(Actor(user=other_admin, source="api"), other_team, name="speech")
    make_webhook(Actor(user=other_admin, source="api"), other_team, endpoint=foreign_endpoint, name="speech asr")

    deliveries = services.notify(team=team, endpoint=endpoint, event="rolled_back", title="Deployment 7 rolled back",
                                 fields={"deployment": 7, "reason": "gate breach"}, url="https://sy.example/d/7/")
    assert [d.webhook for d in deliveries] == [team_wide, this_one]
    for delivery in deliveries:
        assert (delivery.status, delivery.event, delivery.attempts, delivery.log) == (DeliveryStatus.PENDING, "rolled_back", 0, [])
        assert delivery.next_attempt_at is not None
        assert delivery.payload["switchyard"]["endpoint"] == "vision.fraud"
        assert delivery.payload["switchyard"]["deployment"] == 7
    assert [d.webhook.name for d in services.notify(team=team, event="started", title="t", fields={})] == ["all"]


def test_notify_queues_each_delivery_only_when_the_callers_transaction_commits(as_admin, team, endpoint,
                                                                                django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("controlplane.common.tasks._send", lambda name, args, kwargs, countdown=None: sent.append((name, args)))
    make_webhook(as_admin, team)
    make_webhook(as_admin, team, endpoint=endpoint)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():  # the engine's transaction
        deliveries = services.notify(team=team, endpoint=endpoint, event="paused", title="t", fields={})
        assert sent == []
    assert sent == [("notifications.deliver", (d.pk,)) for d in deliveries]


def test_notify_writes_nothing_when_the_callers_transaction_rolls_back(as_admin, team):
    make_webhook(as_admin, team)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.notify(team=team, event="failed", title="t", fields={})
        raise RuntimeError("the transition failed")
    assert not WebhookDelivery.objects.exists()


def test_notify_writes_no_audit_event(as_admin, team):
    make_webhook(as_admin, team)
    before = len(events())
    services.notify(team=team, event="failed", title="t", fields={})
    assert len(events()) == before


def test_notify_refuses_an_unknown_event_and_another_teams_endpoint(team, foreign_endpoint):
    with pytest.raises(ValueError, match="unknown webhook event"):
        services.notify(team=team, event="deployed", title="t", fields={})
    with pytest.raises(ValueError, match="not an endpoint of team vision"):
        services.notify(team=team, endpoint=foreign_endpoint, event="failed", title="t", fields={})


def test_notify_without_webhooks_costs_one_query(team, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert services.notify(team=team, event="succeeded", title="t", fields={}) == []


def test_a_test_delivery_goes_to_an_inactive_webhook_and_is_not_audited(as_admin, team):
    webhook, _ = make_webhook(as_admin, team, active=False)
    before = len(events())
    delivery = services.webhook_test(actor=as_admin, webhook=webhook)
    assert (delivery.event, delivery.status, delivery.payload["switchyard"]["requested_by"]) == ("test", "pending", "ada")
    assert len(events()) == before


def test_only_admins_send_tests(as_admin, team, deployer):
    webhook, _ = make_webhook(as_admin, team)
    with pytest.raises(PermissionDenied):
        services.webhook_test(actor=Actor(user=deployer, source="api"), webhook=webhook)
