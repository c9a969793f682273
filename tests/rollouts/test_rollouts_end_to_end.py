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


def deploy(stack, **data):
    """A deployment of the rollout endpoint; green goes on fleet-1 unless said otherwise."""
    return deployment_create(actor=stack.actor, data={
        "endpoint": ENDPOINT, "placement": "new_servers", "servers": ["fleet-1"], "gates": FAST_GATES, **data})


def _state(d):
    d.refresh_from_db()
    return d.state


def _states(d):
    return [t.to_state for t in d.transitions.order_by("id")]


def test_a_healthy_canary_moves_step_by_step_then_blue_retires(stack):
    load = Load(stack.gateway.url).start()
    try:
        green_rps = "sum(rate(switchyard_gateway_requests_total{endpoint={{endpoint}}, variant={{variant}}}[{{window}}]))"
        d = deploy(
            stack, version=2, strategy="linear", step_percent=40, bake_s=2,
            rollback_window_s=3, gates={**FAST_GATES, "custom": [{"name": "green_rps", "query": green_rps, "max": 1e6}]},
            reason="a healthy green",
        )
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
    custom = GateEvaluation.objects.filter(deployment=d, gate="custom:green_rps")
    assert custom.filter(verdict="pass").count() >= 2  # run by the real Prometheus: green's own requests a second
    assert all(0 < e.value < 1e6 for e in custom.filter(verdict="pass"))
    # Blue is unloaded from fleet-0; green serves from fleet-1.
    wait_for(lambda: not PlacementTarget.objects.filter(model=stack.model, server=stack.servers[0])
             .exclude(state=TargetState.REMOVED).exists(), 30, "blue's target to go")
    assert Deployment.objects.get(pk=d.pk).traffic_percent == 100


def test_same_servers_green_loads_beside_blue_without_a_failed_request(stack):
    load = Load(stack.gateway.url).start()
    try:
        d = deploy(
            stack, version=2, strategy="canary", canary_percent=30, bake_s=2,
            placement="same_servers", servers=[], rollback_window_s=2, reason="same servers",
        )
        assert d.plan["surge"] == 0
        wait_for(lambda: _state(d) == "retired", 120, "the rollout to finish and blue to retire")
        done = time.monotonic()
        # Blue is unloaded by loading green alone on the same server: wait for that reload.
        wait_for(lambda: PlacementTarget.objects.filter(model=stack.model, server=stack.servers[0],
                                                        state=TargetState.READY, placement__versions=[2]).exists(),
                 30, "fleet-0 to hold v2 alone")
        time.sleep(1)
    finally:
        load.stop()
    assert [a for a in load.answers if a.version is None] == []  # the reloads on fleet-0 lost nothing
    assert {a.version for a in load.since(done)} == {2}
    assert {1, 2} <= {a.version for a in load.answers}


def test_a_failing_green_is_rolled_back_on_its_own_and_blue_clients_never_fail(stack):
    load = Load(stack.gateway.url).start()
    try:
        d = deploy(
            stack, version=3, strategy="canary", canary_percent=50, bake_s=30,
            reason="a bad green",
        )
        wait_for(lambda: _state(d) in ("rolling_back", "rolled_back"), 60, "the automatic rollback")
        wait_for(lambda: _state(d) == "rolled_back", 30, "the rollback to finish")
        time.sleep(1)
    finally:
        load.stop()
    d.refresh_from_db()
    assert d.cause == "breach"
    assert VersionLabel.objects.get(model=stack.model, name="stable").version.version == 1
    failed = [a for a in load.answers if a.version is None]
    assert failed, "green failed some requests before the rollback"
    # Blue's clients never saw a failure, start to end: every failed answer is green's own
    # injected error (the test model names its version in it), none from blue or the routing.
    assert all("injected failure (version 3" in a.error for a in failed), {a.error for a in failed}
    # The gateway's guard stopped green after a handful of failures, well before the 30 s bake
    # ended, and the control plane confirmed it with a rollback.
    assert len(failed) <= 40
    assert d.transitions.filter(to_state="rolling_back", event="breach").exists()
    assert GateEvaluation.objects.filter(deployment=d, verdict="fail").exists()
    wait_for(lambda: not PlacementTarget.objects.filter(model=stack.model, server=stack.servers[1])
             .exclude(state=TargetState.REMOVED).exists(), 30, "green to be unloaded")


def test_a_slow_green_breaches_the_relative_p99_gate_and_rolls_back(stack):
    load = Load(stack.gateway.url).start(threads=3)
    try:
        d = deploy(
            stack, version=4, strategy="canary", canary_percent=50, bake_s=3,
            gates={**FAST_GATES, "max_p99_ratio": 1.5}, reason="a slow green",
        )
        wait_for(lambda: _state(d) == "rolled_back", 90, "the rollback")
    finally:
        load.stop()
    d.refresh_from_db()
    assert d.cause == "breach"
    failing = GateEvaluation.objects.filter(deployment=d, gate="p99_vs_blue", verdict="fail")
    assert failing.count() >= 2 and all(e.value > 1.5 for e in failing)
    assert [a for a in load.answers if a.version is None] == []


def test_too_little_traffic_pauses_with_no_data_and_never_passes(stack):
    d = deploy(
        stack, version=2, strategy="canary", canary_percent=20, bake_s=1,
        reason="nobody calls it",
    )
    wait_for(lambda: _state(d) == "paused", 60, "the pause")
    time.sleep(3)
    d.refresh_from_db()
    assert d.state == "paused" and d.traffic_percent == 20
    assert "No data" in d.status_text and "fewer than the minimum of 5" in d.status_text
    assert not GateEvaluation.objects.filter(deployment=d, verdict="pass").exists() or \
        GateEvaluation.objects.filter(deployment=d, verdict="no_data").exists()
    assert VersionLabel.objects.get(model=stack.model, name="stable").version.version == 1


def test_a_green_that_fails_its_warm_up_never_takes_traffic(stack):
    load = Load(stack.gateway.url).start()
    try:
        d = deploy(
            stack, version=5, strategy="canary", canary_percent=50, bake_s=5,
            reason="broken green",
        )
        wait_for(lambda: _state(d) == "failed", 60, "the rollout to fail")
    finally:
        load.stop()
    assert "warm-up inference failed" in d.transitions.get(to_state="rolling_back").reason
    assert "shifting" not in _states(d)
    assert [a for a in load.answers if a.version is None] == []
    assert {a.version for a in load.answers} == {1}


def test_killing_the_worker_at_every_step_boundary_and_mid_load_still_ends_right(stack):
    """SIGKILL the worker process at each state change, and once while green loads; a new worker
    takes over each time. The rollout must still end retired, with green loaded exactly once and
    no failed request (traffic never reaches a variant that is not READY)."""
    from controlplane.audit.models import AuditEvent

    # The reconciler keeps its default 30 s beat: a load whose worker died is taken over because
    # the rollout asks for a reconcile once the load's lease has run out.
    load = Load(stack.gateway.url).start()
    kills = []
    try:
        d = deploy(
            stack, version=2, strategy="steps", steps=[{"percent": 30, "bake_s": 1}, {"percent": 60, "bake_s": 1}],
            rollback_window_s=1,
            reason="crash test",
        )
        seen, mid_load_done = "pending", False
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            state = _state(d)
            loading = PlacementTarget.objects.filter(model=stack.model, server=stack.servers[1],
                                                     state=TargetState.LOADING).exists()
            if state != seen or (loading and not mid_load_done):
                mid_load_done = mid_load_done or loading
                kills.append(state + (" (mid-load)" if loading else ""))
                stack.worker.kill()
                stack.worker.start()
                seen = state
            if state in ("retired", "rolled_back", "failed", "aborted", "rollback_failed"):
                break
            time.sleep(0.02)
        time.sleep(0.5)
    finally:
        load.stop()
    d.refresh_from_db()
    assert d.state == "retired", (d.state, d.status_text, kills)
    assert any("mid-load" in k for k in kills) and len(kills) >= 8, kills
    green_targets = PlacementTarget.objects.filter(placement_id=d.green_placement_id)
    loads = AuditEvent.objects.filter(action="placement.target.load", object_type="placements.placementtarget",
                                      object_id__in=[str(t.pk) for t in green_targets])
    assert green_targets.count() == 1 and loads.count() == 1  # green was loaded once, never twice
    assert [a for a in load.answers if a.version is None] == []
    assert _states(d)[-3:] == ["promoting", "succeeded", "retired"]


def test_a_scheduled_deployment_starts_on_time_through_beat_and_a_cancelled_one_never_does(stack):
    from datetime import timedelta

    from django.utils import timezone

    from controlplane.deployments.services import deployment_act

    start = timezone.now() + timedelta(seconds=4)
    d = deploy(
        stack, version=2, strategy="canary", canary_percent=10, bake_s=60, start_at=start.isoformat(),
        reason="scheduled",
    )
    assert _state(d) == "scheduled"
    time.sleep(2)
    assert _state(d) == "scheduled"  # not before its time
    wait_for(lambda: _state(d) != "scheduled", 15, "the schedule to start it")
    started = d.transitions.get(event="due")
    assert started.source == "schedule" and started.at >= start
    assert (started.at - start).total_seconds() < 3  # the 1 s beat tick
    deployment_act(actor=stack.actor, deployment=d, action="abort", reason="done with this one")
    wait_for(lambda: _state(d) == "aborted", 60, "the abort")

    later = deploy(
        stack, version=2, strategy="canary", start_at=(timezone.now() + timedelta(seconds=2)).isoformat(),
        reason="cancelled",
    )
    deployment_act(actor=stack.actor, deployment=later, action="cancel", reason="not today")
    time.sleep(4)
    assert _state(later) == "cancelled"
    assert _states(later) == ["scheduled", "cancelled"]
