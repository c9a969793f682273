"""The periodic prober through a real Celery worker and the Redis broker."""
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from controlplane.celery import app
from controlplane.fleet.models import Pool, Server, ServerStatus
from workers.fleet import probe_fleet

pytestmark = pytest.mark.integration


def test_beat_schedule_runs_the_prober():
    entry = settings.CELERY_BEAT_SCHEDULE["probe-fleet"]
    assert entry["task"] == probe_fleet.name
    assert entry["schedule"] == settings.SWITCHYARD_PROBE_INTERVAL_SECONDS


@pytest.mark.django_db(transaction=True)
def test_probe_task_runs_on_a_real_worker_over_redis(triton_fleet):
    assert app.conf.broker_url.startswith("redis://"), "the test suite runs Celery on Redis (REDIS_URL)"
    pool = Pool.objects.create(name="cpu")
    live = Server.objects.create(name="live", pool=pool, http_url=triton_fleet[0].http_url)
    dead = Server.objects.create(name="dead", pool=pool, http_url="http://127.0.0.1:9")
    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        probe_fleet.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = dict(Server.objects.values_list("name", "status"))
            if ServerStatus.UNKNOWN not in statuses.values():
                break
            time.sleep(0.2)
    live.refresh_from_db()
    dead.refresh_from_db()
    assert (live.status, dead.status) == (ServerStatus.UP, ServerStatus.DOWN)
    assert dead.last_error
