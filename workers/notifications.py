"""Webhook deliveries: one task per attempt, and a periodic safety net."""
import logging

from controlplane.notifications import delivery
from workers.base import task

log = logging.getLogger(__name__)


@task(delivery.DELIVER_TASK)
def deliver(delivery_id: int):
    """Make a delivery's next attempt; after a failure, queue the next one after its backoff.
    Not due, already done, claimed elsewhere or missing: a quiet no-op."""
    retry_in = delivery.delivery_attempt(delivery_id)
    if retry_in is not None:
        try:
            deliver.apply_async((delivery_id,), countdown=retry_in)
        except Exception as exc:  # noqa: BLE001 - retry_due queues it again once overdue
            log.warning("could not schedule delivery %s again: %s", delivery_id, exc)
    return retry_in


@task("notifications.retry_due", max_retries=0)
def retry_due():
    """Periodic: queue again deliveries whose retry is overdue. Not retried: the next tick does it."""
    return delivery.deliveries_requeue_due()
