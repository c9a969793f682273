"""Delivery end to end, on a real HTTP receiver on loopback: signed, retried with backoff,
logged attempt by attempt, given up after the last attempt. The service runs in the test."""
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.notifications import delivery as deliveries
from controlplane.notifications import services
from controlplane.notifications.models import DeliveryStatus, WebhookDelivery
from controlplane.notifications.signing import verify_signature
from tests.notifications.conftest import make_webhook


def run_to_the_end(delivery_id: int) -> list[float]:
    """Attempt, wait the backoff, attempt again... as the worker does; returns the waits."""
    waits = []
    retry_in = deliveries.delivery_attempt(delivery_id)
    while retry_in is not None:
        waits.append(retry_in)
        time.sleep(retry_in)
        retry_in = deliveries.delivery_attempt(delivery_id)
    return waits


@pytest.fixture
def notified(as_admin, team, endpoint, receiver):
    """A webhook of vision.fraud on the receiver, and one rolled_back delivery queued to it."""
    webhook, secret = make_webhook(as_admin, team, url=receiver.url, endpoint=endpoint)
    [one] = services.notify(team=team, endpoint=endpoint, event="rolled_back", title="Deployment 7 rolled back",
                            fields={"deployment": 7, "blue": 3, "green": 4, "reason": "p99 above 250 ms"},
                            url="https://sy.example/deployments/7/")
    return webhook, secret, one


def test_a_delivery_arrives_signed_and_the_signature_verifies(notified, receiver):
    _, secret, one = notified
    assert run_to_the_end(one.pk) == []
    [got] = receiver.received
    assert got.path == "/hooks/switchyard"
    assert got.headers["content-type"] == "application/json"
    assert (got.headers["x-switchyard-event"], got.headers["x-switchyard-delivery"]) == ("rolled_back", str(one.pk))
    assert verify_signature(secret, got.headers["x-switchyard-timestamp"], got.body, got.headers["x-switchyard-signature"])
    assert abs(int(got.headers["x-switchyard-timestamp"]) - time.time()) < 30
    assert not verify_signature("whsec_wrong", got.headers["x-switchyard-timestamp"], got.body, got.headers["x-switchyard-signature"])
    assert got.json["text"] == "[vision.fraud] Deployment 7 rolled back"
    assert got.json["switchyard"]["reason"] == "p99 above 250 ms" and got.json["blocks"]
    one.refresh_from_db()
    assert (one.status, one.attempts, one.last_status_code, one.last_error, one.next_attempt_at) == (DeliveryStatus.DELIVERED, 1, 200, "", None)
    assert one.delivered_at is not None
    [entry] = one.log
    assert (entry["attempt"], entry["status_code"], entry["error"]) == (1, 200, "") and entry["duration_ms"] >= 0


def test_a_receiver_failing_twice_gets_it_on_the_third_attempt_with_backoff(notified, receiver):
    _, secret, one = notified
    receiver.statuses = [500, 500, 200]
    assert run_to_the_end(one.pk) == [0.01, 0.02]  # the base (SWITCHYARD_WEBHOOK_BACKOFF_SECONDS), then doubled
    one.refresh_from_db()
    assert (one.status, one.attempts, one.last_status_code) == (DeliveryStatus.DELIVERED, 3, 200)
    assert [(e["attempt"], e["status_code"]) for e in one.log] == [(1, 500), (2, 500), (3, 200)]
    assert one.log[0]["error"] == "HTTP 500: receiver says no"
    assert len(receiver.received) == 3
    assert len({r.headers["x-switchyard-delivery"] for r in receiver.received}) == 1  # the same delivery, to deduplicate
    assert all(verify_signature(secret, r.headers["x-switchyard-timestamp"], r.body, r.headers["x-switchyard-signature"])
               for r in receiver.received)


def test_a_receiver_that_always_fails_ends_failed_after_the_last_attempt(notified, receiver):
    _, _, one = notified
    receiver.statuses = [503]
    waits = run_to_the_end(one.pk)
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.16]
    one.refresh_from_db()
    assert (one.status, one.attempts, one.next_attempt_at, one.delivered_at) == (DeliveryStatus.FAILED, deliveries.MAX_ATTEMPTS, None, None)
    assert len(one.log) == len(receiver.received) == deliveries.MAX_ATTEMPTS == 6
    assert deliveries.delivery_attempt(one.pk) is None and len(receiver.received) == 6  # no seventh


def test_a_receiver_that_is_down_is_an_attempt_with_the_reason(as_admin, team):
    make_webhook(as_admin, team, url="http://127.0.0.1:9/nobody-listens")
    [one] = services.notify(team=team, event="failed", title="t", fields={})
    assert deliveries.delivery_attempt(one.pk) == 0.01
    one.refresh_from_db()
    assert one.status == DeliveryStatus.PENDING and one.last_status_code is None
    assert "refused" in one.last_error.lower() and one.log[0]["status_code"] is None


def test_redirects_are_not_followed(notified, receiver):
    _, _, one = notified
    receiver.statuses = [307]
    receiver.headers = {"Location": "http://169.254.169.254/latest/"}
    deliveries.delivery_attempt(one.pk)
    one.refresh_from_db()
    assert one.status == DeliveryStatus.PENDING and one.last_status_code == 307
    assert "do not follow redirects" in one.last_error and len(receiver.received) == 1


def test_an_attempt_not_yet_due_or_already_finished_is_a_no_op(notified, receiver):
    _, _, one = notified
    receiver.statuses = [500, 200]
    assert deliveries.delivery_attempt(one.pk) == 0.01
    WebhookDelivery.objects.filter(pk=one.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert deliveries.delivery_attempt(one.pk) is None  # a duplicate message: not due yet
    assert len(receiver.received) == 1
    WebhookDelivery.objects.filter(pk=one.pk).update(next_attempt_at=timezone.now())
    assert deliveries.delivery_attempt(one.pk) is None  # delivered now
    assert deliveries.delivery_attempt(one.pk) is None  # and never again
    assert deliveries.delivery_attempt(987654321) is None  # a missing delivery
    assert len(receiver.received) == 2


def test_a_claimed_attempt_is_leased_so_a_second_worker_does_not_send_it_too(notified, receiver, monkeypatch):
    _, _, one = notified
    seen = []

    def post(**kwargs):  # while the first worker is in its POST, a second one tries the same delivery
        seen.append(deliveries.delivery_attempt(one.pk))
        return deliveries.Attempt(status_code=200, error="", duration_ms=1)

    monkeypatch.setattr(deliveries, "post", post)
    deliveries.delivery_attempt(one.pk)
    assert seen == [None]
    one.refresh_from_db()
    assert (one.status, one.attempts) == (DeliveryStatus.DELIVERED, 1)


def test_a_deactivated_webhook_stops_its_pending_deliveries(notified, receiver, as_admin):
    webhook, _, one = notified
    services.webhook_update(actor=as_admin, webhook=webhook, active=False)
    assert deliveries.delivery_attempt(one.pk) is None
    one.refresh_from_db()
    assert one.status == DeliveryStatus.FAILED and "deactivated" in one.last_error and receiver.received == []


def test_a_test_delivery_is_sent_to_an_inactive_webhook(as_admin, team, receiver):
    webhook, secret = make_webhook(as_admin, team, url=receiver.url, active=False)
    test = services.webhook_test(actor=as_admin, webhook=webhook)
    assert run_to_the_end(test.pk) == []
    [got] = receiver.received
    assert got.headers["x-switchyard-event"] == "test" and got.json["switchyard"]["event"] == "test"
    assert verify_signature(secret, got.headers["x-switchyard-timestamp"], got.body, got.headers["x-switchyard-signature"])


def test_each_delivery_goes_to_its_own_webhook_with_its_own_secret(as_admin, team, other_team, other_admin, receiver):
    from controlplane.audit.context import Actor

    _, vision_secret = make_webhook(as_admin, team, url=receiver.url + "?team=vision")
    _, speech_secret = make_webhook(Actor(user=other_admin, source="api"), other_team, url=receiver.url + "?team=speech")
    [one] = services.notify(team=team, event="succeeded", title="Deployment 8 succeeded", fields={})
    run_to_the_end(one.pk)
    [got] = receiver.received
    assert got.path.endswith("?team=vision") and got.json["switchyard"]["team"] == "vision"
    signature = (got.headers["x-switchyard-timestamp"], got.body, got.headers["x-switchyard-signature"])
    assert verify_signature(vision_secret, *signature) and not verify_signature(speech_secret, *signature)


def test_the_body_sent_is_the_stored_payload(notified, receiver):
    _, _, one = notified
    run_to_the_end(one.pk)
    one.refresh_from_db()
    assert json.loads(receiver.received[0].body) == one.payload


def test_requeue_due_queues_overdue_deliveries_and_gives_up_lost_last_attempts(notified, receiver, monkeypatch, team, endpoint):
    _, _, one = notified
    [fresh] = services.notify(team=team, endpoint=endpoint, event="started", title="t", fields={})
    [lost_last] = services.notify(team=team, endpoint=endpoint, event="failed", title="t", fields={})
    long_ago = timezone.now() - timedelta(minutes=5)
    WebhookDelivery.objects.filter(pk=one.pk).update(next_attempt_at=long_ago)  # its message was lost
    WebhookDelivery.objects.filter(pk=lost_last.pk).update(next_attempt_at=long_ago, attempts=deliveries.MAX_ATTEMPTS)
    queued = []
    monkeypatch.setattr(deliveries, "enqueue", lambda name, pk: queued.append((name, pk)))
    assert deliveries.deliveries_requeue_due() == 1
    assert queued == [("notifications.deliver", one.pk)]  # not the fresh one: its own message comes first
    lost_last.refresh_from_db()
    assert lost_last.status == DeliveryStatus.FAILED and "never reported" in lost_last.last_error
    fresh.refresh_from_db()
    assert fresh.status == DeliveryStatus.PENDING


def test_a_path_becomes_a_link_with_the_public_url_and_stays_a_path_without(as_admin, team, endpoint, receiver, settings):
    make_webhook(as_admin, team, url=receiver.url, endpoint=endpoint)
    settings.SWITCHYARD_PUBLIC_URL = ""
    [bare] = services.notify(team=team, endpoint=endpoint, event="paused", title="t", fields={}, url="/deployments/7/")
    settings.SWITCHYARD_PUBLIC_URL = "https://switchyard.example.com"
    [linked] = services.notify(team=team, endpoint=endpoint, event="paused", title="t", fields={}, url="/deployments/7/")
    assert bare.payload["switchyard"]["url"] == "/deployments/7/"
    assert bare.payload["blocks"][-1]["text"]["text"] == "In Switchyard: /deployments/7/"
    assert linked.payload["switchyard"]["url"] == "https://switchyard.example.com/deployments/7/"
    assert linked.payload["blocks"][-1]["text"]["text"] == "<https://switchyard.example.com/deployments/7/|Open in Switchyard>"
