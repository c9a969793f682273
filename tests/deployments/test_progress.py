"""The deployment page's progress and gate board, pure: no database."""
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from controlplane.deployments.machine import State
from controlplane.deployments.progress import (
    configured_gates,
    deployment_progress,
    duration_text,
    format_value,
    gate_board,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STEPS = [{"percent": 10, "bake_s": 60}, {"percent": 50, "bake_s": 120}]


def progress(state, step_index=-1, started=None, traffic=0, steps=STEPS):
    return deployment_progress(state=state, steps=steps, step_index=step_index, step_started_at=started,
                               traffic_percent=traffic, now=NOW)


def test_baking_counts_the_time_left_from_the_step_start():
    p = progress(State.BAKING, 1, NOW - timedelta(seconds=30), 50)
    assert (p.step_number, p.step_count, p.step_text) == (2, 2, "step 2 of 2")
    assert (p.step_percent, p.traffic_percent, p.bake_s, p.bake_left_s, p.bake_percent) == (50, 50, 120, 90, 25)
    assert p.overall_percent == 10 + 40 + int(40 * 0.8 * 0.25)  # step 2's slot is 50-90: a quarter of its bake
    assert not p.halted


def test_a_bake_past_its_end_has_nothing_left():
    p = progress(State.BAKING, 0, NOW - timedelta(seconds=600), 10)
    assert (p.bake_left_s, p.bake_percent) == (0, 100)


def test_a_zero_second_bake_is_done():
    p = progress(State.BAKING, 0, NOW, 10, steps=[{"percent": 10, "bake_s": 0}])
    assert (p.bake_left_s, p.bake_percent) == (0, 100)


def test_shifting_waits_for_the_whole_bake():
    p = progress(State.SHIFTING, 0, None, 10)
    assert (p.bake_left_s, p.bake_percent, p.overall_percent) == (60, 0, 10)


@pytest.mark.parametrize("state", [State.ANALYZING, State.PAUSED])
def test_after_the_bake_the_gates_are_judged(state):
    p = progress(state, 0, NOW - timedelta(seconds=70), 10)
    assert (p.bake_left_s, p.bake_percent, p.overall_percent) == (0, 100, 10 + 36)


@pytest.mark.parametrize("state, overall", [
    (State.SCHEDULED, 0), (State.PENDING, 0), (State.VALIDATING, 2), (State.PROVISIONING, 5), (State.VERIFYING, 8),
    (State.AWAITING_APPROVAL, 90), (State.PROMOTING, 95), (State.SUCCEEDED, 100), (State.RETIRED, 100),
])
def test_overall_milestones(state, overall):
    p = progress(state, 1 if overall >= 90 else -1, traffic=100 if overall >= 95 else 0)
    assert p.overall_percent == overall and not p.halted
    assert p.bake_percent == (100 if overall >= 90 else 0)  # past the last step's bake


def test_overall_never_goes_back_along_the_happy_path():
    path = [progress(State.PENDING), progress(State.VALIDATING), progress(State.PROVISIONING), progress(State.VERIFYING)]
    for i in range(len(STEPS)):
        path += [progress(State.SHIFTING, i), progress(State.BAKING, i, NOW - timedelta(seconds=1)),
                 progress(State.BAKING, i, NOW - timedelta(seconds=59)), progress(State.ANALYZING, i)]
    path += [progress(State.PROMOTING, 1), progress(State.SUCCEEDED, 1)]
    values = [p.overall_percent for p in path]
    assert values == sorted(values) and values[-1] == 100


@pytest.mark.parametrize("state", [State.ROLLING_BACK, State.ROLLED_BACK, State.ABORTED, State.FAILED,
                                   State.ROLLBACK_FAILED, State.CANCELLED])
def test_a_rollback_stops_the_bar_where_it_was(state):
    assert progress(state, 0).halted
    assert progress(state, 0).overall_percent == 10 + 36
    assert progress(state, -1).overall_percent == 0
    assert progress(state, 0).bake_left_s is None


def test_before_the_first_step():
    p = progress(State.PROVISIONING)
    assert (p.step_number, p.step_text, p.step_percent, p.bake_s, p.bake_left_s) == (0, "before step 1 of 2", None, None, None)


def test_duration_text():
    assert [duration_text(s) for s in (None, -3, 0, 42.9, 60, 185, 3600, 7440)] == \
        ["—", "0 s", "0 s", "42 s", "1 min", "3 min 5 s", "1 h", "2 h 4 min"]


def test_values_in_the_unit_people_read():
    assert format_value("error_ratio", 0.0123) == "1.23%"
    assert format_value("guard", 0.5) == "50.00%"
    assert format_value("p99_ms", 181.26) == "181.3 ms"
    assert format_value("p99_vs_blue", 1.234) == "1.23×"
    assert format_value("custom:queue", 12345.678) == "1.235e+04"
    assert format_value("error_ratio", None) == "—"


def test_configured_gates_follow_the_stored_spec():
    gates = {"max_error_ratio": 0.05, "max_p99_ms": None, "max_p99_ratio": 1.5, "guard": True, "min_requests": 50,
             "custom": [{"name": "queue", "query": "x", "max": 3}]}
    assert configured_gates(gates) == [
        ("error_ratio", "Error rate (green's 5xx share)", "≤ 5.00%"),
        ("p99_vs_blue", "Latency p99 against blue's", "≤ 1.50×"),
        ("custom:queue", "Custom: queue", "≤ 3"),
        ("guard", "Gateway guard (stops green at once)", "trips above 5.00% errors"),
    ]
    assert [g[0] for g in configured_gates({**gates, "guard": False})] == ["error_ratio", "p99_vs_blue", "custom:queue"]
    assert [g[0] for g in configured_gates({"max_p99_ms": 200, "guard": True})] == ["p99_ms"]  # no ratio: nothing to guard


def test_gate_board_pairs_each_gate_with_its_latest_evaluation():
    latest = {"error_ratio": SimpleNamespace(value=0.2, requests=300.0, verdict="fail", at=NOW, detail="20% > 5%"),
              "stale": SimpleNamespace(value=1, requests=1, verdict="pass", at=NOW, detail="")}
    rows = gate_board({"max_error_ratio": 0.05, "max_p99_ms": 250, "guard": True, "min_requests": 50}, latest)
    assert [r.name for r in rows] == ["error_ratio", "p99_ms", "guard"]
    first = rows[0]
    assert (first.value_text, first.limit_text, first.requests, first.min_requests, first.verdict, first.detail) == \
        ("20.00%", "≤ 5.00%", 300.0, 50, "fail", "20% > 5%")
    assert (rows[1].value_text, rows[1].verdict, rows[1].requests, rows[1].detail) == ("—", "", None, "not evaluated yet")
    assert rows[2].detail == "armed: not tripped"
