"""The reconciler's per-target decision (pure), over every combination of its inputs.

What Triton reports is enumerated as index rows (each of two versions absent, READY, LOADING,
UNLOADING or UNAVAILABLE) and classified by drift.py exactly as the reconciler does, so the
inputs are the ones the reconciler can really see; the rules are checked as invariants on all
of them, and the docstring's cases as a table.
"""
import itertools
from collections import Counter

import pytest

from controlplane.placements import drift
from controlplane.placements.models import Drift, TargetState
from controlplane.placements.reconcile import (
    REAPPLY_DRIFTS,
    SHOWS_DRIFT,
    Action,
    Decision,
    decide,
)

NAME = "vision.fraud-scorer"
OURS = {"name": NAME, "max_batch_size": 8}
TRITON_STATES = (None, drift.READY, drift.LOADING, drift.UNLOADING, drift.UNAVAILABLE)
STUCK, GRACE = 600.0, 60.0
LOADS = {Action.REAPPLY_DRIFT, Action.REAPPLY_ABANDONED, Action.LOAD_PENDING}


def rows_for(v1, v2) -> list[dict]:
    return [{"name": NAME, "version": str(v), "state": s, "reason": ""} for v, s in ((1, v1), (2, v2)) if s]


def cases():
    """Every (inputs, observed facts) the reconciler can meet, for two orderings of the timeouts."""
    for stuck_after, grace in ((STUCK, GRACE), (GRACE, STUCK)):
        ages = sorted({0.0, grace, grace + 1, stuck_after, stuck_after + 1})
        for state, active, reachable, (v1, v2), wanted, same_config, age, lease_expired in itertools.product(
            TargetState.values, (True, False), (True, False), itertools.product(TRITON_STATES, repeat=2),
            ([1], [1, 2]), (True, False), ages, (True, False),
        ):
            rows = rows_for(v1, v2) if reachable else []
            if reachable:
                ready = drift.versions_in(rows, drift.READY)
                effective = (OURS if same_config else OURS | {"max_batch_size": 4}) if ready else None
                value, _ = drift.classify(versions=wanted, config=OURS, rows=rows, effective=effective)
            else:
                value = Drift.UNREACHABLE
            inputs = {"state": state, "placement_active": active, "reachable": reachable, "drift": value,
                      "loaded": drift.is_loaded(rows), "busy": drift.is_busy(rows), "age": age,
                      "stuck_after": stuck_after, "grace": grace, "lease_expired": lease_expired}
            yield inputs, decide(**inputs)


ALL = list(cases())


def test_the_enumeration_is_complete_and_reaches_every_action():
    assert len(ALL) == 2 * 7 * 2 * 2 * 25 * 2 * 2 * 5 * 2
    assert all(isinstance(d, Decision) and isinstance(d.action, Action) for _, d in ALL)
    seen = Counter(d.action for _, d in ALL)
    assert set(seen) == set(Action), f"never decided: {set(Action) - set(seen)}"


def test_nothing_is_loaded_while_triton_is_busy_for_a_removed_placement_or_over_a_failure():
    for i, d in ALL:
        if d.action in LOADS:
            assert i["reachable"] and i["placement_active"] and not i["busy"], i
            assert i["state"] in (TargetState.READY, TargetState.LOADING, TargetState.PENDING), i


def test_each_load_has_its_own_cause():
    for i, d in ALL:
        if d.action == Action.REAPPLY_DRIFT:
            assert i["state"] == TargetState.READY and i["drift"] in REAPPLY_DRIFTS, i
        elif d.action == Action.REAPPLY_ABANDONED:
            assert i["state"] == TargetState.LOADING and i["lease_expired"] and i["drift"] != Drift.NONE, i
        elif d.action == Action.LOAD_PENDING:
            assert i["state"] == TargetState.PENDING and i["age"] > i["grace"] and i["drift"] != Drift.NONE, i


def test_a_target_is_adopted_only_when_triton_serves_exactly_what_we_want():
    for i, d in ALL:
        if d.action == Action.ADOPT:
            assert i["drift"] == Drift.NONE and i["loaded"] and not i["busy"] and i["placement_active"], i
            assert i["state"] in (TargetState.LOADING, TargetState.STUCK, TargetState.PENDING), i


def test_only_unloads_end_in_removed_and_only_once_triton_has_let_go():
    for i, d in ALL:
        leaving = i["state"] == TargetState.UNLOADING or (i["state"] == TargetState.STUCK and not i["placement_active"])
        if d.action == Action.REMOVE:
            assert leaving and i["reachable"] and not i["loaded"], i
        if d.action == Action.UNLOAD_AGAIN:
            assert leaving and i["loaded"] and not i["busy"] and i["age"] > i["grace"], i
        if leaving and i["reachable"]:
            assert d.action in (Action.REMOVE, Action.UNLOAD_AGAIN, Action.STUCK_UNLOADING, Action.NOTHING), i


def test_stuck_means_busy_on_triton_for_longer_than_the_timeout():
    for i, d in ALL:
        if d.action == Action.STUCK_LOADING:
            assert i["state"] == TargetState.LOADING and i["busy"] and i["age"] > i["stuck_after"], i
        if d.action == Action.STUCK_UNLOADING:
            assert i["state"] == TargetState.UNLOADING and i["busy"] and i["age"] > i["stuck_after"], i
        if d.action == Action.REPORT_STUCK:
            assert i["state"] == TargetState.STUCK and i["placement_active"], i


def test_failed_removed_and_unreachable_targets_are_never_acted_on():
    for i, d in ALL:
        if i["state"] in (TargetState.FAILED, TargetState.REMOVED) or not i["reachable"]:
            assert d.action == Action.NOTHING, i


def test_drift_is_recorded_for_settled_targets_only():
    for i, d in ALL:
        leaving = i["state"] == TargetState.UNLOADING or (i["state"] == TargetState.STUCK and not i["placement_active"])
        expected = i["state"] in SHOWS_DRIFT and not (leaving and i["reachable"])
        assert d.record_drift == expected, i


def test_nothing_wanted_is_left_hanging():
    """Liveness: once the timeouts have passed and Triton is idle, every target of an active
    placement ends up in a settled state or gets an action that leads there."""
    for i, d in ALL:
        late = i["age"] > max(i["grace"], i["stuck_after"]) and i["lease_expired"]
        if not (late and i["reachable"] and i["placement_active"] and not i["busy"]):
            continue
        state = i["state"]
        if state in (TargetState.PENDING, TargetState.LOADING):
            assert d.action in (Action.ADOPT, Action.LOAD_PENDING, Action.REAPPLY_ABANDONED), i
        elif state == TargetState.READY:
            assert d.action == (Action.NOTHING if i["drift"] == Drift.NONE else Action.REAPPLY_DRIFT), i
        elif state == TargetState.UNLOADING:
            assert d.action == (Action.UNLOAD_AGAIN if i["loaded"] else Action.REMOVE), i
        elif state == TargetState.STUCK:
            assert d.action == (Action.ADOPT if i["drift"] == Drift.NONE else Action.REPORT_STUCK), i


def test_young_targets_are_only_moved_by_what_triton_reports_or_a_dead_worker():
    for i, d in ALL:
        if i["age"] <= min(i["grace"], i["stuck_after"]):
            assert d.action not in (Action.LOAD_PENDING, Action.UNLOAD_AGAIN, Action.STUCK_LOADING,
                                    Action.STUCK_UNLOADING), i
            if d.action == Action.REAPPLY_ABANDONED:
                assert i["lease_expired"] and not i["busy"], i


def test_a_load_whose_worker_still_renews_its_lease_is_never_taken_over_however_old():
    """A live worker may be waiting for readiness (Triton idle) or queued behind other servers'
    loads in its fan-out: loading again over it would be a double load."""
    for i, d in ALL:
        if i["state"] == TargetState.LOADING and not i["lease_expired"]:
            assert d.action not in LOADS, i


def test_a_dead_workers_load_is_taken_over_as_soon_as_triton_is_idle_not_after_the_stuck_timeout():
    for i, d in ALL:
        if (i["state"] == TargetState.LOADING and i["lease_expired"] and i["placement_active"] and i["reachable"]
                and not i["busy"] and i["drift"] != Drift.NONE):
            assert d.action == Action.REAPPLY_ABANDONED, i


BASE = {"placement_active": True, "reachable": True, "drift": Drift.NONE, "loaded": True, "busy": False, "age": 0.0,
        "stuck_after": STUCK, "grace": GRACE, "lease_expired": False}


@pytest.mark.parametrize("change, action", [
    ({"state": "ready"}, Action.NOTHING),
    ({"state": "ready", "drift": Drift.MISSING, "loaded": False}, Action.REAPPLY_DRIFT),  # Triton restarted
    ({"state": "ready", "drift": Drift.WRONG_CONFIG}, Action.REAPPLY_DRIFT),
    ({"state": "ready", "drift": Drift.WRONG_VERSION, "busy": True}, Action.NOTHING),  # someone is loading: wait
    ({"state": "loading"}, Action.ADOPT),
    ({"state": "loading", "drift": Drift.MISSING, "loaded": True, "busy": True, "age": 601.0}, Action.STUCK_LOADING),
    ({"state": "loading", "drift": Drift.MISSING, "loaded": False, "age": 20.0, "lease_expired": True},
     Action.REAPPLY_ABANDONED),  # its worker died before Triton had the request
    ({"state": "loading", "drift": Drift.MISSING, "loaded": False, "age": 601.0}, Action.NOTHING),  # alive: waits
    ({"state": "loading", "drift": Drift.MISSING, "loaded": False, "age": 30.0}, Action.NOTHING),
    ({"state": "loading", "drift": Drift.MISSING, "busy": True, "age": 30.0, "lease_expired": True},
     Action.NOTHING),  # Triton still loads what the dead worker sent: adopted once READY
    ({"state": "pending", "drift": Drift.MISSING, "loaded": False, "age": 61.0}, Action.LOAD_PENDING),
    ({"state": "pending", "drift": Drift.MISSING, "loaded": False, "age": 59.0}, Action.NOTHING),
    ({"state": "failed", "drift": Drift.MISSING, "loaded": False, "age": 9999.0}, Action.NOTHING),
    ({"state": "stuck", "drift": Drift.MISSING, "busy": True}, Action.REPORT_STUCK),
    ({"state": "stuck"}, Action.ADOPT),
    ({"state": "unloading", "loaded": False}, Action.REMOVE),
    ({"state": "unloading", "busy": True, "age": 601.0}, Action.STUCK_UNLOADING),
    ({"state": "unloading", "age": 61.0}, Action.UNLOAD_AGAIN),
    ({"state": "stuck", "placement_active": False, "loaded": False}, Action.REMOVE),
    ({"state": "ready", "placement_active": False, "drift": Drift.MISSING, "loaded": False}, Action.NOTHING),
    ({"state": "ready", "reachable": False, "drift": Drift.UNREACHABLE, "loaded": False}, Action.NOTHING),
])
def test_the_documented_cases(change, action):
    assert decide(**(BASE | change)).action == action
