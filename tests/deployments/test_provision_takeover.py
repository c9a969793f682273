"""Provisioning when green's load lost its worker: the rollout asks for a reconcile at once (the
reconciler reads Triton, then adopts the load or sends it again) instead of waiting for the next
beat. Triton is never called here: the targets are as a dead worker left them."""
from datetime import timedelta

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from controlplane.deployments.machine import State
from controlplane.deployments.models import Deployment
from controlplane.deployments.services import engine
from controlplane.placements.models import PlacementTarget, TargetState
from tests.deployments.conftest import create, drive, place_ready


def test_a_load_whose_lease_ran_out_asks_for_one_reconcile_and_says_so(
        label_endpoint, as_deployer, servers, django_capture_on_commit_callbacks):
    d = drive(create(as_deployer), State.PROVISIONING)
    green = place_ready(d.model, [2], servers[1:2], state=TargetState.LOADING)
    Deployment.objects.filter(pk=d.pk).update(green_placement=green)
    d.refresh_from_db()
    target = green.targets.get()
    cache.delete(f"reconcile-requested:{connection.settings_dict.get('NAME')}")

    PlacementTarget.objects.filter(pk=target.pk).update(lease_until=timezone.now() + timedelta(seconds=10))
    with django_capture_on_commit_callbacks() as queued:
        waiting = engine._provision(d)
    assert (waiting.event, waiting.status) == (None, "loading green on cpu-2")  # its worker renews: wait
    assert queued == []

    PlacementTarget.objects.filter(pk=target.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks() as queued:
        first, second = engine._provision(d), engine._provision(d)
    assert first.event is None and first.status == "green's load on cpu-2 lost its worker; reconciling"
    assert second.status == first.status
    assert len(queued) == 1  # one reconcile for the lease period, however often the rollout looks
    assert PlacementTarget.objects.get(pk=target.pk).state == TargetState.LOADING  # the reconciler decides, not this
