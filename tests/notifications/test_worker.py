"""Deliveries through a real Celery worker over the Redis broker: notify in a committed
transaction, the worker POSTs, a failure is retried by the task's own delayed message."""
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import transaction

from controlplane.celery import app
from controlplane.notifications import services
from controlplane.notifications.models import DeliveryStatus, WebhookDelivery
from controlplane.notifications.signing import verify_signature
from tests.notifications.conftest import make_webhook
from workers.notifications import deliver, retry_due

pytestmark = pytest.mark.integration


def test_beat_runs_the_safety_net_every_few_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["webhook-retry-due"]
    assert entry["task"] == retry_due.name == "notifications.retry_due"
    assert entry["schedule"] <= 10
    assert deliver.name == "notifications.deliver" and deliver.acks_late is True


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_and_retries_after_a_failure(as_admin, team, endpoint, receiver, settings):
    assert app.conf.broker_url.startswith("redis://"), "the test suite runs Celery on Redis (REDIS_URL)"
    settings.SWITCHYARD_WEBHOOK_BACKOFF_SECONDS = 0.5
    receiver.statuses = [500, 200]
    _, secret = make_webhook(as_admin, team, url=receiver.url, endpoint=endpoint)
    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        with transaction.atomic():  # as the deployment engine does
            [one] = services.notify(team=team, endpoint=endpoint, event="succeeded", title="Deployment 9 succeeded",
                                    fields={"deployment": 9, "green": 4})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if WebhookDelivery.objects.filter(pk=one.pk).exclude(status=DeliveryStatus.PENDING).exists():
                break
            time.sleep(0.1)
    one.refresh_from_db()
    assert (one.status, one.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert [e["status_code"] for e in one.log] == [500, 200]
    assert len(receiver.received) == 2
    last = receiver.received[-1]
    assert verify_signature(secret, last.headers["x-switchyard-timestamp"], last.body, last.headers["x-switchyard-signature"])
    assert last.json["switchyard"]["deployment"] == 9
    app.control.purge()
