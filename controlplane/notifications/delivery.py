"""Sending deliveries: one signed POST per attempt, retried with exponential backoff.

A worker claims an attempt with compare-and-set (``status=pending``, due, ``attempts`` below the
limit), which pushes ``next_attempt_at`` a lease ahead; the POST runs outside any transaction;
the outcome is written only if the row is still the one claimed. So a duplicate task message is
a no-op, and a worker that dies mid-POST leaves the delivery to ``deliveries_requeue_due`` once
the lease runs out. Delivery is at least once: receivers deduplicate on X-Switchyard-Delivery.

Webhooks may point at any http(s) URL, loopback and private networks included (on-prem receivers
are usually there); redirects are never followed, and a 3xx counts as a failed attempt.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from controlplane.common.tasks import enqueue
from controlplane.notifications import signing
from controlplane.notifications.models import (
    TEST_EVENT,
    DeliveryStatus,
    WebhookDelivery,
)

log = logging.getLogger(__name__)

DELIVER_TASK = "notifications.deliver"
MAX_ATTEMPTS = 6
TIMEOUT_S = 5.0  # per connect and per read; a receiver should answer at once and work later
LEASE_S = 60.0  # how long a claimed attempt may take before another worker may try again
BACKOFF_CAP_S = 600.0
OVERDUE_S = 5.0  # requeue_due leaves a retry this long to its own scheduled message first
REQUEUE_BATCH = 200
SNIPPET = 300  # bytes of a failed answer kept in the log
USER_AGENT = "Switchyard-Webhooks/1"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx


_opener = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): base, 2 base, 4 base ... capped."""
    return min(float(settings.SWITCHYARD_WEBHOOK_BACKOFF_SECONDS) * 2 ** (attempt - 1), BACKOFF_CAP_S)


def body_bytes(payload: dict) -> bytes:
    """The exact bytes sent, and signed."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _snippet(data: bytes) -> str:
    return data[:SNIPPET].decode("utf-8", "replace").replace("\x00", "").strip()


def post(*, url: str, secret: str, delivery_id: int, event: str, payload: dict) -> Attempt:
    """POST the signed payload once. Never raises: every failure is an Attempt with an error."""
    body = body_bytes(payload)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Switchyard-Event": event,
        "X-Switchyard-Delivery": str(delivery_id),
        "X-Switchyard-Timestamp": timestamp,
        "X-Switchyard-Signature": signing.sign(secret, timestamp, body),
    }
    started = time.monotonic()
    code, error = None, ""
    try:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with _opener.open(request, timeout=TIMEOUT_S) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
        try:
            answer = _snippet(exc.read(SNIPPET))
        except Exception:  # noqa: BLE001 - the status is what matters
            answer = ""
        finally:
            exc.close()
        if 300 <= code < 400:
            error = f"HTTP {code} redirect to {exc.headers.get('Location', '?')}: webhooks do not follow redirects"
        else:
            error = f"HTTP {code}" + (f": {answer}" if answer else "")
    except urllib.error.URLError as exc:
        error = f"{type(exc.reason).__name__}: {exc.reason}"
    except Exception as exc:  # noqa: BLE001 - timeouts, resets, bad answers: all a failed attempt
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    duration_ms = int((time.monotonic() - started) * 1000)
    return Attempt(status_code=code, error=error[:1000], duration_ms=duration_ms)


def delivery_attempt(delivery_id: int) -> float | None:
    """Make the next attempt of a delivery if it is due, and record it. Returns the seconds until
    the attempt after it, or None when none is scheduled (delivered, failed for good, not due,
    or claimed by another worker). A missing delivery is a quiet no-op."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now, attempts__lt=MAX_ATTEMPTS,
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=LEASE_S))
    if claimed != 1:
        return None
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:  # its webhook was deleted meanwhile
        return None
    webhook = delivery.webhook
    if not webhook.active and delivery.event != TEST_EVENT:
        attempt = Attempt(status_code=None, error="The webhook was deactivated; not sent.", duration_ms=0)
        return _record(delivery, attempt, final=True)
    # The URL and secret come from the webhook's row now: a fixed URL takes effect on the next retry.
    attempt = post(url=webhook.url, secret=webhook.secret, delivery_id=delivery.pk, event=delivery.event,
                   payload=delivery.payload)
    return _record(delivery, attempt)


def _record(delivery: WebhookDelivery, attempt: Attempt, *, final: bool = False) -> float | None:
    now = timezone.now()
    number = delivery.attempts
    entry = {"attempt": number, "at": now.isoformat(), "status_code": attempt.status_code, "error": attempt.error,
             "duration_ms": attempt.duration_ms}
    changes = {"last_status_code": attempt.status_code, "last_error": attempt.error, "log": [*delivery.log, entry]}
    retry_in = None
    if attempt.ok:
        changes.update(status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None)
    elif final or number >= MAX_ATTEMPTS:
        changes.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    else:
        retry_in = backoff_seconds(number)
        changes.update(next_attempt_at=now + timedelta(seconds=retry_in))
    written = WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=number).update(**changes)
    if not written:  # the lease ran out and the delivery was given up meanwhile
        log.warning("delivery %s: attempt %s finished after its lease; outcome not recorded", delivery.pk, number)
        return None
    if not attempt.ok:
        log.info("delivery %s to webhook %s: attempt %s failed (%s)%s", delivery.pk, delivery.webhook_id, number,
                 attempt.error, f"; next in {retry_in:g} s" if retry_in is not None else "; giving up")
    return retry_in


def deliveries_requeue_due() -> int:
    """Periodic safety net: queue again the pending deliveries whose next attempt is overdue (a
    lost broker message, a worker that died mid-attempt), and give up on those whose last allowed
    attempt never reported. Returns how many were queued."""
    now = timezone.now()
    given_up = WebhookDelivery.objects.filter(
        status=DeliveryStatus.PENDING, attempts__gte=MAX_ATTEMPTS, next_attempt_at__lte=now,
    ).update(status=DeliveryStatus.FAILED, next_attempt_at=None,
             last_error="The last attempt's worker never reported; given up.")
    if given_up:
        log.warning("gave up %s webhook deliveries whose last attempt never reported", given_up)
    due = list(WebhookDelivery.objects.filter(
        status=DeliveryStatus.PENDING, attempts__lt=MAX_ATTEMPTS, next_attempt_at__lte=now - timedelta(seconds=OVERDUE_S),
    ).order_by("next_attempt_at").values_list("pk", flat=True)[:REQUEUE_BATCH])
    for pk in due:
        enqueue(DELIVER_TASK, pk)
    return len(due)
