"""Placements through the API and a real Celery worker over Redis, against a real tritonserver."""
import os
import time

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_retry
from django.conf import settings

from controlplane.audit.context import Actor
from controlplane.celery import app
from controlplane.fleet.models import Pool, Server
from controlplane.placements import drift, services
from controlplane.placements.models import PlacementTarget
from controlplane.registry.services import version_register
from tests.placements.test_on_triton import (
    NAME,
    create_placer,
    index_rows,
    model_source,
    unload_and_wait,
)
from workers.placements import reconcile_fleet

pytestmark = pytest.mark.integration


def test_beat_runs_the_reconciler():
    entry = settings.CELERY_BEAT_SCHEDULE["reconcile-placements"]
    assert entry["task"] == reconcile_fleet.name == "placements.reconcile_fleet"
    assert entry["schedule"] == float(os.environ.get("SWITCHYARD_RECONCILE_INTERVAL_SECONDS", 30))


@pytest.fixture
def model(team, deployer):
    return create_placer(team, deployer)


def wait_for_state(target_filter, state, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(PlacementTarget.objects.filter(**target_filter).values_list("state", flat=True)) == {state}:
            return
        time.sleep(0.2)
    found = list(PlacementTarget.objects.filter(**target_filter).values_list("state", "error"))
    raise AssertionError(f"not all {state} after {timeout} s: {found}")


@pytest.mark.django_db(transaction=True)
def test_api_placement_is_applied_and_removed_by_a_worker(api, deployer, model, s3, triton_fleet):
    assert app.conf.broker_url.startswith("redis://"), "the test suite runs Celery on Redis (REDIS_URL)"
    version_register(actor=Actor(user=deployer, source="api"), model=model, version=1,
                     contents={"model.py": model_source(1)})
    server = Server.objects.create(name="fleet-0", pool=Pool.objects.create(name="cpu"), http_url=triton_fleet[0].http_url)
    client = api(deployer)
    app.control.purge()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            created = client.post("/api/v1/placements/", {"model": model.pk, "versions": [1], "servers": ["fleet-0"]}, format="json")
            assert created.status_code == 201, created.json()
            placement_id = created.json()["id"]
            wait_for_state({"placement_id": placement_id}, "ready")
            assert [(r["version"], r["state"]) for r in index_rows(server.http_url)] == [("1", "READY")]

            assert client.delete(f"/api/v1/placements/{placement_id}/").status_code == 202
            wait_for_state({"placement_id": placement_id}, "removed")
            assert not [r for r in index_rows(server.http_url) if r["state"] in ("READY", "LOADING", "UNLOADING")]
        detail = client.get(f"/api/v1/placements/{placement_id}/").json()
        assert detail["is_active"] is False and detail["states"] == {"removed": 1}
    finally:
        unload_and_wait(server.http_url, NAME)


@pytest.mark.django_db(transaction=True)
def test_an_unload_still_in_progress_is_sent_again_by_the_workers_retry(deployer, model, s3, triton_fleet, settings):
    actor = Actor(user=deployer, source="api")
    version_register(actor=actor, model=model, version=1, contents={"model.py": model_source(1)})
    server = Server.objects.create(name="fleet-0", pool=Pool.objects.create(name="cpu"), http_url=triton_fleet[0].http_url)
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=[server])
    assert services.placement_apply(placement_id=placement.pk) == {"ready": 1}
    settings.SWITCHYARD_PLACEMENT_UNLOAD_WAIT_SECONDS = 0.001  # the first attempt gives up while Triton is UNLOADING
    retries = []

    def on_retry(sender=None, **kwargs):
        retries.append(sender.name)

    task_retry.connect(on_retry, weak=False)
    app.control.purge()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            services.placement_remove(actor=actor, placement=placement)  # queues the unload on commit
            wait_for_state({"placement_id": placement.pk}, "removed")
        assert retries and set(retries) == {"placements.unload_placement"}
        assert not drift.is_loaded(index_rows(server.http_url))
    finally:
        task_retry.disconnect(on_retry)
        unload_and_wait(server.http_url, NAME)
