"""The overview's pure parts: how far a deployment is through its steps, and gate values in their units."""
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.common.overview import (
    GateLine,
    configured_gates,
    gate_lines,
    gate_text,
    progress,
)
from controlplane.deployments.machine import State

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STEPS = [{"percent": 10, "bake_s": 60}, {"percent": 50, "bake_s": 120}, {"percent": 100, "bake_s": 0}]


def at(state, step_index=-1, ago_s=None, steps=STEPS):
    started = NOW - timedelta(seconds=ago_s) if ago_s is not None else None
    return progress(state=state, step_index=step_index, steps=steps, step_started_at=started, now=NOW)


@pytest.mark.parametrize("state", ["scheduled", "pending", "validating", "provisioning", "verifying"])
def test_before_the_first_step_nothing_is_done(state):
    p = at(state)
    assert (p.percent, p.step, p.steps, p.tone, p.bake_left_s) == (0.0, 0, 3, "run", None)
    assert p.text.startswith("3 steps, ")


def test_a_baking_step_counts_by_the_share_of_its_bake_that_ran():
    p = at("baking", 1, ago_s=30)  # step 2: 30 of its 120 s
    assert p.percent == pytest.approx(100 * 1.25 / 3, abs=0.05) and p.step == 2 and p.bake_left_s == 90
    assert p.text == "step 2 of 3, baking"
    assert at("baking", 1, ago_s=500).percent == pytest.approx(100 * 2 / 3, abs=0.05)  # never past its step
    assert at("baking", 1, ago_s=500).bake_left_s == 0
    assert at("baking", 2, ago_s=5).percent == 100.0  # a step without a bake is done once it bakes


def test_a_step_is_done_once_its_bake_ran():
    assert at("shifting", 1).percent == pytest.approx(33.3)
    assert at("analyzing", 1).percent == pytest.approx(66.7)
    paused = at("paused", 1)
    assert paused.percent == pytest.approx(66.7) and paused.tone == "wait"


@pytest.mark.parametrize("state,tone", [("awaiting_approval", "wait"), ("promoting", "done"), ("succeeded", "done")])
def test_every_step_passed(state, tone):
    p = at(state, 2)
    assert (p.percent, p.tone) == (100.0, tone)


def test_a_rollback_keeps_where_it_was_and_is_marked_bad():
    p = at("rolling_back", 1)
    assert (p.percent, p.tone) == (pytest.approx(33.3), "bad")
    assert at("rollback_failed", 0).tone == "bad" and "ROLLBACK FAILED" in at("rollback_failed", 0).text


def test_every_state_has_a_progress():
    for state in State:
        p = at(state.value, 1, ago_s=10)
        assert 0 <= p.percent <= 100 and p.phase


def test_ticks_mark_where_each_step_ends():
    assert at("baking", 0).ticks == [33.333, 66.667]
    assert at("baking", 0, steps=[{"percent": 100, "bake_s": 60}]).ticks == []
    assert at("pending", steps=[]).steps == 1  # no steps recorded: one bar, no division by zero


def test_gate_values_in_their_units():
    assert gate_text("error_ratio", 0.004) == "0.4%"
    assert gate_text("error_ratio", 0.05) == "5%"
    assert gate_text("p99_ms", 212.345) == "212.3 ms"
    assert gate_text("p99_vs_blue", 1.234) == "1.23×"
    assert gate_text("custom:queue", 3.0) == "3"
    assert gate_text("error_ratio", None) == "—"


def test_the_gate_bar_puts_the_limit_at_four_fifths():
    assert GateLine("error_ratio", 0.05, value=0.025).fill == 40.0
    assert GateLine("error_ratio", 0.05, value=0.05).fill == 80.0
    assert GateLine("error_ratio", 0.05, value=0.5).fill == 100.0
    assert GateLine("error_ratio", 0.05).fill == 0.0
    assert GateLine("error_ratio", 0.0, value=0.001).fill == 100.0 and GateLine("error_ratio", 0.0, value=0.0).fill == 0.0


def test_configured_gates_are_named_as_their_evaluations():
    gates = {"max_error_ratio": 0.05, "max_p99_ms": None, "max_p99_ratio": 1.5,
             "custom": [{"name": "queue", "query": "q", "max": 3}]}
    assert configured_gates(gates) == [("error_ratio", 0.05), ("p99_vs_blue", 1.5), ("custom:queue", 3.0)]
    lines = gate_lines(gates, {})
    assert [(line.gate, line.label, line.verdict, line.value) for line in lines] == [
        ("error_ratio", "Error rate", "", None), ("p99_vs_blue", "p99 against blue", "", None), ("custom:queue", "queue", "", None)]
