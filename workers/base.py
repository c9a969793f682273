"""Celery tasks. Each task takes ids, re-fetches objects and calls a service."""
from django.db import InterfaceError, OperationalError

from controlplane.celery import app


class TryLater(Exception):
    """A task's work is not done for a passing reason (Triton still unloading, say): retry it."""


# Transient, and safe to retry because every task is idempotent (ids, compare-and-set claims):
# a dropped or failed-over database connection, and a task's own TryLater.
RETRIED = (OperationalError, InterfaceError, TryLater)


def task(name: str, **options):
    """The project-wide task decorator: explicit names, late acks, and bounded retries of RETRIED
    with exponential backoff (about 2, 4, 8, 16 s, jittered); after the last one the task fails
    and the periodic tasks (the prober, the reconciler) take the work over."""
    options.setdefault("acks_late", True)
    options.setdefault("ignore_result", True)
    options.setdefault("autoretry_for", RETRIED)
    options.setdefault("max_retries", 4)
    options.setdefault("retry_backoff", 2)
    options.setdefault("retry_backoff_max", 60)
    options.setdefault("retry_jitter", True)
    return app.task(name=name, **options)
