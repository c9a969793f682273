"""deployments.verdicts: readings to pass, fail or no data, and one evaluation to the next event."""
import itertools

import pytest

from controlplane.deployments import machine
from controlplane.deployments.machine import Event, State
from controlplane.deployments.spec import CustomGate, Gates
from controlplane.deployments.verdicts import Evaluation, Reading, judge_gates, next_event, no_data_reason, overall

ERRORS_ONLY = Gates()  # max_error_ratio 0.05, min_requests 50
P99_ONLY = Gates(max_error_ratio=None, max_p99_ms=200)
RATIO_ONLY = Gates(max_error_ratio=None, max_p99_ratio=1.5)
GPU = CustomGate(name="gpu_memory", query="max(nv_gpu_memory_used_bytes{model={{model}}})", max=0.9)
CUSTOM_ONLY = Gates(max_error_ratio=None, custom=(GPU,))


def one(gates, **readings) -> Evaluation:
    evaluations = judge_gates(gates, window_s=60, **readings)
    assert len(evaluations) == 1
    return evaluations[0]


# -- the error ratio -------------------------------------------------------------------------------


def test_error_ratio_passes_at_or_below_the_limit():
    e = one(ERRORS_ONLY, green_errors=Reading(0.01, 400))
    assert e == Evaluation("error_ratio", 0.01, 0.05, 400, 60, "pass", "0.01 ≤ 0.05")
    assert one(ERRORS_ONLY, green_errors=Reading(0.05, 400)).verdict == "pass"
    assert one(ERRORS_ONLY, green_errors=Reading(0.0, 400)).verdict == "pass"


def test_error_ratio_fails_above_the_limit():
    e = one(ERRORS_ONLY, green_errors=Reading(0.2, 400))
    assert (e.gate, e.verdict, e.value, e.limit, e.detail) == ("error_ratio", "fail", 0.2, 0.05, "0.2 > 0.05")
    assert one(ERRORS_ONLY, green_errors=Reading(0.0500001, 400)).verdict == "fail"


def test_error_ratio_without_a_value_or_a_reading_is_no_data():
    e = one(ERRORS_ONLY, green_errors=Reading(None, 400))
    assert (e.verdict, e.value, e.detail) == ("no_data", None, "no value for error_ratio yet")
    e = one(ERRORS_ONLY)
    assert (e.verdict, e.requests) == ("no_data", 0)
    assert "0 requests in 60 s, fewer than the minimum of 50" in e.detail


@pytest.mark.parametrize(("requests", "verdict"), [
    (0, "no_data"), (1, "no_data"), (49, "no_data"), (49.99, "no_data"), (50, "fail"), (50.0, "fail"), (51, "fail"),
    (10_000, "fail"),
])
def test_exactly_min_requests_is_enough_to_judge(requests, verdict):
    e = one(ERRORS_ONLY, green_errors=Reading(0.5, requests))
    assert e.verdict == verdict and e.requests == requests
    if verdict == "no_data":
        assert "fewer than the minimum of 50" in e.detail
        assert e.value == 0.5  # the value is kept to show, but never judged


def test_min_requests_follows_the_gates():
    gates = Gates(min_requests=1)
    assert one(gates, green_errors=Reading(0.0, 1)).verdict == "pass"
    assert one(gates, green_errors=Reading(0.0, 0.5)).verdict == "no_data"


def test_a_bad_green_with_little_traffic_is_still_no_data_for_that_gate_but_fail_wins_overall():
    evaluations = judge_gates(Gates(max_p99_ms=100), window_s=30, green_errors=Reading(0.9, 10),
                              green_p99=Reading(0.5, 60))
    assert [e.verdict for e in evaluations] == ["no_data", "fail"]
    assert overall(evaluations) == "fail"


# -- p99, absolute ---------------------------------------------------------------------------------


def test_p99_is_read_in_seconds_and_judged_in_milliseconds():
    e = one(P99_ONLY, green_p99=Reading(0.15, 100))
    assert (e.gate, e.verdict, e.limit) == ("p99_ms", "pass", 200)
    assert e.value == pytest.approx(150)
    assert e.detail == "150 ms ≤ 200 ms"
    e = one(P99_ONLY, green_p99=Reading(0.25, 100))
    assert (e.verdict, e.value, e.detail) == ("fail", 250, "250 ms > 200 ms")
    assert one(P99_ONLY, green_p99=Reading(0.2, 100)).verdict == "pass"  # at the limit


def test_p99_without_enough_requests_or_a_value_is_no_data():
    assert one(P99_ONLY, green_p99=Reading(0.01, 49)).verdict == "no_data"
    assert one(P99_ONLY, green_p99=Reading(None, 100)).detail == "no value for p99_ms yet"
    assert one(P99_ONLY).verdict == "no_data"


def test_the_p99_gate_reads_green_p99_not_the_error_reading():
    e = one(P99_ONLY, green_errors=Reading(0.9, 1000), green_p99=Reading(0.1, 100))
    assert (e.verdict, e.requests) == ("pass", 100)


# -- p99 relative to blue --------------------------------------------------------------------------


def test_p99_ratio_to_blue_passes_and_fails():
    e = one(RATIO_ONLY, green_p99=Reading(0.12, 100), blue_p99=Reading(0.1, 100))
    assert (e.gate, e.verdict, e.limit, e.requests) == ("p99_vs_blue", "pass", 1.5, 100)
    assert e.value == pytest.approx(1.2)
    assert e.detail == "green p99 120.0 ms is 1.20× blue's 100.0 ms (≤ 1.5×)"
    e = one(RATIO_ONLY, green_p99=Reading(0.2, 100), blue_p99=Reading(0.1, 100))
    assert (e.verdict, e.value) == ("fail", 2.0)
    assert e.detail == "green p99 200.0 ms is 2.00× blue's 100.0 ms (> 1.5×)"
    assert one(RATIO_ONLY, green_p99=Reading(0.375, 100), blue_p99=Reading(0.25, 100)).verdict == "pass"  # 1.5


def test_a_faster_green_passes():
    assert one(RATIO_ONLY, green_p99=Reading(0.01, 100), blue_p99=Reading(0.1, 100)).verdict == "pass"


@pytest.mark.parametrize("blue", [Reading(0.1, 49), Reading(0.1, 0), Reading(None, 0), None])
def test_blue_with_too_few_requests_is_no_data(blue):
    e = one(RATIO_ONLY, green_p99=Reading(0.5, 1000), blue_p99=blue)
    assert (e.gate, e.verdict, e.value, e.requests) == ("p99_vs_blue", "no_data", None, 1000)
    requests = 0 if blue is None else blue.requests
    assert e.detail == f"blue has {requests} requests in the window, fewer than the minimum of 50"


@pytest.mark.parametrize("value", [None, 0, 0.0])
def test_blue_without_a_p99_is_no_data_never_a_division_by_zero(value):
    e = one(RATIO_ONLY, green_p99=Reading(0.5, 1000), blue_p99=Reading(value, 500))
    assert (e.verdict, e.detail) == ("no_data", "no p99 for blue yet")


def test_exactly_min_requests_for_blue_is_enough():
    assert one(RATIO_ONLY, green_p99=Reading(0.1, 50), blue_p99=Reading(0.1, 50)).verdict == "pass"


def test_green_with_too_few_requests_or_no_value_is_no_data_against_blue():
    e = one(RATIO_ONLY, green_p99=Reading(0.5, 49), blue_p99=Reading(0.1, 500))
    assert (e.verdict, e.requests) == ("no_data", 49)
    e = one(RATIO_ONLY, green_p99=Reading(None, 500), blue_p99=Reading(0.1, 500))
    assert (e.verdict, e.value) == ("no_data", None)
    assert one(RATIO_ONLY, blue_p99=Reading(0.1, 500)).verdict == "no_data"


# -- custom gates ----------------------------------------------------------------------------------


def test_a_custom_gate_rests_on_greens_requests():
    e = one(CUSTOM_ONLY, green_errors=Reading(0.0, 100), custom={"gpu_memory": Reading(0.5, 0)})
    assert (e.gate, e.verdict, e.value, e.limit, e.requests) == ("custom:gpu_memory", "pass", 0.5, 0.9, 100)
    e = one(CUSTOM_ONLY, green_errors=Reading(0.0, 100), custom={"gpu_memory": Reading(0.95, 0)})
    assert e.verdict == "fail"
    assert one(CUSTOM_ONLY, green_errors=Reading(0.0, 100), custom={"gpu_memory": Reading(0.9, 0)}).verdict == "pass"


def test_a_custom_gate_with_little_green_traffic_is_no_data_whatever_its_own_count():
    e = one(CUSTOM_ONLY, green_errors=Reading(0.0, 10), custom={"gpu_memory": Reading(0.1, 10_000)})
    assert (e.verdict, e.requests) == ("no_data", 10)


def test_a_custom_gate_without_greens_errors_uses_its_own_count():
    assert one(CUSTOM_ONLY, custom={"gpu_memory": Reading(0.1, 100)}).verdict == "pass"
    assert one(CUSTOM_ONLY, custom={"gpu_memory": Reading(0.1, 49)}).verdict == "no_data"


def test_a_custom_gate_without_a_reading_is_no_data():
    e = one(CUSTOM_ONLY, green_errors=Reading(0.0, 100))
    assert (e.verdict, e.detail) == ("no_data", "no value for custom:gpu_memory yet")
    assert one(CUSTOM_ONLY, green_errors=Reading(0.0, 100), custom={"other": Reading(0.1, 100)}).verdict == "no_data"
    assert one(CUSTOM_ONLY, green_errors=Reading(0.0, 100), custom={}).verdict == "no_data"


def test_a_negative_limit_custom_gate():
    gates = Gates(max_error_ratio=None, custom=(CustomGate("delta", "q", -1.0),))
    assert one(gates, green_errors=Reading(0, 100), custom={"delta": Reading(-2.0, 0)}).verdict == "pass"
    assert one(gates, green_errors=Reading(0, 100), custom={"delta": Reading(0.0, 0)}).verdict == "fail"


# -- every gate at once ----------------------------------------------------------------------------


def test_every_configured_gate_is_judged_in_order():
    gates = Gates(max_error_ratio=0.05, max_p99_ms=300, max_p99_ratio=2.0,
                  custom=(GPU, CustomGate("queue", "q", 10)))
    evaluations = judge_gates(gates, window_s=45, green_errors=Reading(0.01, 200), green_p99=Reading(0.25, 200),
                              blue_p99=Reading(0.1, 200), custom={"gpu_memory": Reading(0.5, 0)})
    assert [(e.gate, e.verdict) for e in evaluations] == [
        ("error_ratio", "pass"), ("p99_ms", "pass"), ("p99_vs_blue", "fail"), ("custom:gpu_memory", "pass"),
        ("custom:queue", "no_data"),
    ]
    assert {e.window_s for e in evaluations} == {45}
    assert overall(evaluations) == "fail"


def test_no_configured_gate_judges_nothing_and_nothing_is_no_data():
    gates = Gates(max_error_ratio=None)
    assert judge_gates(gates, window_s=60, green_errors=Reading(0.0, 1000)) == []
    assert overall([]) == "no_data"


# -- overall ---------------------------------------------------------------------------------------


def _evaluation(verdict):
    return Evaluation("g", 0.0, 1.0, 100, 60, verdict)


@pytest.mark.parametrize("verdicts", [
    combo for n in range(1, 4) for combo in itertools.product(["pass", "fail", "no_data"], repeat=n)
])
def test_overall_fail_beats_no_data_beats_pass(verdicts):
    expected = "fail" if "fail" in verdicts else "no_data" if "no_data" in verdicts else "pass"
    assert overall([_evaluation(v) for v in verdicts]) == expected


# -- next_event ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("verdict", "failed_in_row", "threshold", "last", "approval", "event"), [
    ("fail", 1, 2, False, False, None),
    ("fail", 0, 1, False, False, None),
    ("fail", 2, 2, False, False, Event.BREACH),
    ("fail", 3, 2, True, True, Event.BREACH),
    ("fail", 1, 1, True, False, Event.BREACH),
    ("fail", 99, 100, True, True, None),
    ("no_data", 0, 2, False, False, Event.NO_DATA),
    ("no_data", 5, 2, True, True, Event.NO_DATA),
    ("pass", 0, 2, False, False, Event.PASS),
    ("pass", 0, 2, False, True, Event.PASS),
    ("pass", 0, 2, True, False, Event.LAST_PASS),
    ("pass", 0, 2, True, True, Event.HOLD),
    ("pass", 7, 2, True, True, Event.HOLD),  # the count of earlier failures no longer matters
])
def test_next_event(verdict, failed_in_row, threshold, last, approval, event):
    assert next_event(verdict, failed_in_row=failed_in_row, failures_to_breach=threshold, last_step=last,
                      approval_required=approval) == event


def test_next_event_for_every_combination_is_one_the_analyzing_state_accepts():
    for verdict, failed, threshold, last, approval in itertools.product(
            ["pass", "fail", "no_data"], range(5), range(1, 4), [False, True], [False, True]):
        event = next_event(verdict, failed_in_row=failed, failures_to_breach=threshold, last_step=last,
                           approval_required=approval)
        if verdict == "fail":
            assert event == (Event.BREACH if failed >= threshold else None)
        elif verdict == "no_data":
            assert event == Event.NO_DATA
        else:
            assert event == (Event.PASS if not last else Event.HOLD if approval else Event.LAST_PASS)
        if event is not None:
            assert machine.allowed(State.ANALYZING, event)
    assert machine.transition(State.ANALYZING, next_event(
        "pass", failed_in_row=0, failures_to_breach=2, last_step=True, approval_required=True)) \
        == State.AWAITING_APPROVAL


# -- no_data_reason --------------------------------------------------------------------------------


def test_no_data_reason_names_each_gate_without_data_and_only_those():
    evaluations = judge_gates(Gates(max_p99_ms=200, max_p99_ratio=1.5), window_s=60,
                              green_errors=Reading(0.01, 100), green_p99=Reading(None, 100),
                              blue_p99=Reading(0.1, 3))
    text = no_data_reason(evaluations)
    assert text.startswith("No data: p99_ms: no value for p99_ms yet; p99_vs_blue: blue has 3 requests")
    assert "error_ratio" not in text
    assert text.endswith("No data never passes; resume when traffic flows.")


def test_a_stored_custom_gate_that_reads_beyond_its_deployment_is_not_run():
    """Gates stored before the pinning check existed are checked again before each run: one that
    is not pinned (or cannot be read) is never sent to Prometheus, so it reads as no data."""
    from controlplane.metrics.custom_gates import is_pinned

    ours = {"endpoint": "vision.fraud", "model": "vision.fraud"}
    assert is_pinned('x{endpoint="vision.fraud"} + y{model="vision.fraud"}', **ours)
    assert not is_pinned('x{endpoint="vision.fraud"} + up', **ours)
    assert not is_pinned('x{endpoint="speech.asr"}', **ours)
    assert not is_pinned('x{endpoint="vision.fraud"', **ours)
