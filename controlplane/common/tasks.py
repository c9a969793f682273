"""Queue Celery tasks by their registered name, after the current transaction commits.

Domain code never imports ``workers/`` (the tasks import the services, not the other way round);
an architecture test checks that every name given here is a registered task.
"""
import logging

from django.db import transaction

from controlplane.celery import app

log = logging.getLogger(__name__)


def enqueue(name: str, *args, **kwargs) -> None:
    """Send task ``name`` once the transaction commits (at once outside one). A broker that is
    down is logged, not raised: the change is committed, and the periodic tasks catch up."""
    transaction.on_commit(lambda: _send(name, args, kwargs))


def _send(name: str, args: tuple, kwargs: dict) -> None:
    try:
        app.send_task(name, args=args, kwargs=kwargs)
    except Exception as exc:  # noqa: BLE001 - the change itself is committed
        log.warning("could not queue %s%s: %s", name, args, exc)
