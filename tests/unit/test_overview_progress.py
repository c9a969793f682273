"""The overview's own pure parts: the colour of a deployment's bar, where its steps end on it, and
a gate value's bar against its limit. (How far a deployment is comes from deployments/progress.py,
as its page shows it; tests/deployments/test_progress.py covers that.)"""
import re
from pathlib import Path

import pytest

from controlplane.common.overview import LIMIT_AT, gate_fill, step_ticks, tone
from controlplane.deployments.machine import State


@pytest.mark.parametrize("state,expected", [
    ("scheduled", "run"), ("pending", "run"), ("provisioning", "run"), ("shifting", "run"), ("baking", "run"),
    ("analyzing", "run"), ("paused", "wait"), ("awaiting_approval", "wait"), ("promoting", "done"),
    ("succeeded", "done"), ("retired", "done"), ("rolling_back", "bad"), ("rollback_failed", "bad"),
    ("rolled_back", "bad"), ("aborted", "bad"), ("failed", "bad"), ("cancelled", "bad"),
])
def test_the_bar_colour_of_each_state(state, expected):
    assert tone(state) == expected


def test_every_state_has_a_colour():
    assert {tone(s.value) for s in State} == {"run", "wait", "done", "bad"}


def test_ticks_mark_the_end_of_green_preparation_and_of_each_step():
    assert step_ticks(3) == [10.0, 36.667, 63.333, 90.0]
    assert step_ticks(1) == [10.0, 90.0]
    assert step_ticks(0) == []


def test_the_gate_bar_puts_the_limit_at_four_fifths():
    css = (Path(__file__).resolve().parents[2] / "static" / "css" / "overview.css").read_text()
    assert re.search(r"\.ov-meter-limit \{[^}]*left: 80%", css) and LIMIT_AT == 80.0  # the line drawn where the bar puts it
    assert gate_fill(0.025, 0.05) == 40.0
    assert gate_fill(0.05, 0.05) == 80.0
    assert gate_fill(0.5, 0.05) == 100.0  # past the limit: full, the line inside it
    assert gate_fill(None, 0.05) == 0.0  # not judged yet
    assert gate_fill(0.001, 0.0) == 100.0 and gate_fill(0.0, 0.0) == 0.0  # a zero limit
