"""Queue Celery tasks by their registered name, after the current transaction commits.

Domain code never imports ``workers/`` (the tasks import the services, not the other way round);
an architecture test checks that every name given here is a registered task.
"""
import logging

from django.db import transaction

from controlplane.celery import app

log = logging.getLogger(__name__)


def enqueue(name: str, *args, countdown: float | None = None, **kwargs) -> None:
    """Send task ``name`` once the transaction commits (at once outside one), to run ``countdown``
    seconds later if given. A broker that is down is logged, not raised: the change is committed,
    and the periodic tasks catch up."""
    transaction.on_commit(lambda: _send(name, args, kwargs, countdown))


def _send(name: str, args: tuple, kwargs: dict, countdown: float | None = None) -> None:
    try:
        app.send_task(name, args=args, kwargs=kwargs, countdown=countdown)
    except Exception as exc:  # noqa: BLE001 - the change itself is committed
        log.warning("could not queue %s%s: %s", name, args, exc)
