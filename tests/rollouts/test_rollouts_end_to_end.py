"""Rollouts end to end on the real fleet: the services create deployments, a real Celery worker
process carries them out, the gateway moves the traffic, Prometheus judges the gates.
"""
import time

import pytest

from controlplane.deployments.models import Deployment, GateEvaluation
from controlplane.deployments.services import deployment_create
from controlplane.placements.models import PlacementTarget, TargetState
from controlplane.registry.models import VersionLabel
from tests.rollouts.conftest import ENDPOINT, Load, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST_GATES = {"max_error_ratio": 0.05, "min_requests": 5, "interval_s": 1, "window_s": 10, "failures_to_breach": 2}


def _state(d):
    d.refresh_from_db()
    return d.state


def _states(d):
    return [t.to_state for t in d.transitions.order_by("id")]


def test_a_healthy_canary_moves_step_by_step_then_blue_retires(stack):
    load = Load(stack.gateway.url).start()
    try:
        wait_for(lambda: len(load.answers) > 20, 20, "traffic through the gateway")
        d = deployment_create(actor=stack.actor, data={
            "endpoint": ENDPOINT, "version": 2, "strategy": "linear", "step_percent": 40, "bake_s": 2,
            "placement": "new_servers", "servers": ["fleet-1"], "gates": FAST_GATES, "rollback_window_s": 3,
            "reason": "a healthy green",
        })
        wait_for(lambda: _state(d) == "baking", 60, "the first step to bake")
        shifted = time.monotonic()
        # At 40% both versions answer; stickiness keeps each user on one of them.
        wait_for(lambda: {a.version for a in load.since(shifted)} >= {1, 2}, 15, "both versions to answer")
        wait_for(lambda: _state(d) in ("succeeded", "retired"), 90, "the promotion")
        promoted = time.monotonic()
        wait_for(lambda: _state(d) == "retired", 60, "blue to retire after the window")
        time.sleep(0.5)
    finally:
        load.stop()

    assert VersionLabel.objects.get(model=stack.model, name="stable").version.version == 2
    assert _states(d) == ["pending", "validating", "provisioning", "verifying", "shifting", "baking", "analyzing",
                          "shifting", "baking", "analyzing", "promoting", "succeeded", "retired"]
    assert {a.version for a in load.since(promoted + 1)} == {2}
    assert [a for a in load.answers if a.version is None] == []  # no failed request, start to end
    assert GateEvaluation.objects.filter(deployment=d, verdict="pass").count() >= 2
    # Blue is unloaded from fleet-0; green serves from fleet-1.
    wait_for(lambda: not PlacementTarget.objects.filter(model=stack.model, server=stack.servers[0])
             .exclude(state=TargetState.REMOVED).exists(), 30, "blue's target to go")
    assert Deployment.objects.get(pk=d.pk).traffic_percent == 100
