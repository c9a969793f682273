"""Queueing by task name on commit, and the task decorator's bounded retries, on a real Celery
worker over Redis."""
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, transaction

from controlplane.celery import app
from controlplane.common.tasks import enqueue
from workers.base import TryLater, task
from workers.placements import apply_placement, reconcile_fleet, unload_placement

pytestmark = pytest.mark.integration


def queued() -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(app.conf.task_default_queue).message_count


@pytest.mark.django_db(transaction=True)
def test_enqueue_sends_after_commit_and_never_after_a_rollback():
    app.control.purge()
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("placements.apply_placement", 987654)
        raise RuntimeError("the change failed")
    assert queued() == 0
    with transaction.atomic():
        enqueue("placements.apply_placement", 987654)
        assert queued() == 0  # not before the commit: the worker must find the rows
    assert queued() == 1
    app.control.purge()


def test_every_task_retries_transient_errors_a_bounded_number_of_times_with_backoff():
    for one in (apply_placement, unload_placement, reconcile_fleet):
        assert set(one.autoretry_for) == {OperationalError, InterfaceError, TryLater}
        assert (one.max_retries, one.retry_backoff, one.retry_backoff_max, one.retry_jitter) == (4, 2, 60, True)
        assert one.acks_late is True


ATTEMPTS = "tests:task-attempts"


@task("tests.busy_twice", max_retries=2, retry_backoff=1)
def busy_twice():
    if cache.incr(ATTEMPTS) <= 2:
        raise TryLater("held by someone else")
    return "done"


@task("tests.always_busy", max_retries=2, retry_backoff=1)
def always_busy():
    cache.incr(ATTEMPTS)
    raise TryLater("held for good")


def run_until(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


@pytest.mark.parametrize("job, attempts", [(busy_twice, 3), (always_busy, 3)])
def test_a_real_worker_retries_with_backoff_and_then_stops(job, attempts):
    assert app.conf.broker_url.startswith("redis://"), "the test suite runs Celery on Redis (REDIS_URL)"
    cache.set(ATTEMPTS, 0, timeout=120)
    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        started = time.monotonic()
        job.delay()
        run_until(lambda: cache.get(ATTEMPTS) >= attempts)
        time.sleep(3.5)  # longer than the largest backoff (1 + 2 s): no further attempt comes
    assert cache.get(ATTEMPTS) == attempts  # the first run and max_retries=2 retries, no more
    assert time.monotonic() - started < 20
    app.control.purge()
