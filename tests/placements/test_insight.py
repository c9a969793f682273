"""Batching insight from Triton statistics (pure)."""
import pytest

from controlplane.placements.insight import StatsSample, batching_insight


def stats(*, requests, inferences, executions, queue_ns, compute_ns, failures=0):
    """One version's model_stats entry in Triton's shape."""
    return [{
        "name": "m", "version": "1", "inference_count": inferences, "execution_count": executions,
        "inference_stats": {
            "success": {"count": requests - failures, "ns": 1}, "fail": {"count": failures, "ns": 1},
            "queue": {"count": requests, "ns": queue_ns}, "compute_input": {"count": requests, "ns": compute_ns // 4},
            "compute_infer": {"count": requests, "ns": compute_ns // 2}, "compute_output": {"count": requests, "ns": compute_ns // 4},
        },
    }]


def test_numbers_over_the_window_between_two_samples():
    before = StatsSample.from_triton(stats(requests=100, inferences=100, executions=50, queue_ns=1000, compute_ns=4000), at=10.0)
    after = StatsSample.from_triton(stats(requests=300, inferences=300, executions=75, queue_ns=7000, compute_ns=8000, failures=2), at=20.0)
    insight = batching_insight(after, before)
    assert insight.basis == "window" and insight.window_seconds == 10.0
    assert insight.batch_size == 200 / 25
    assert insight.queue_share == pytest.approx(6000 / (6000 + 4000))
    assert insight.queue_percent == pytest.approx(60.0)
    assert insight.requests_per_second == 20.0 and insight.requests == 200


def test_versions_are_summed():
    sample = StatsSample.from_triton(
        stats(requests=10, inferences=10, executions=5, queue_ns=0, compute_ns=400)
        + stats(requests=30, inferences=30, executions=5, queue_ns=400, compute_ns=400), at=1.0)
    assert (sample.requests, sample.inferences, sample.executions, sample.queue_ns, sample.busy_ns) == (40, 40, 10, 400, 1200)


def test_no_traffic_in_the_window_falls_back_to_totals_since_load():
    sample = StatsSample.from_triton(stats(requests=40, inferences=40, executions=10, queue_ns=100, compute_ns=300), at=5.0)
    later = StatsSample(**(sample.as_dict() | {"at": 15.0}))
    insight = batching_insight(later, sample)
    assert (insight.basis, insight.batch_size, insight.requests_per_second) == ("since load", 4.0, 0.0)
    assert insight.queue_share == pytest.approx(0.25)


def test_counters_that_went_back_mean_a_reload_and_no_rate():
    old = StatsSample.from_triton(stats(requests=900, inferences=900, executions=300, queue_ns=9, compute_ns=9), at=1.0)
    new = StatsSample.from_triton(stats(requests=6, inferences=6, executions=3, queue_ns=10, compute_ns=30), at=2.0)
    insight = batching_insight(new, old)
    assert (insight.basis, insight.batch_size, insight.requests_per_second) == ("since load", 2.0, None)


def test_an_idle_model_has_no_ratios():
    idle = StatsSample.from_triton(stats(requests=0, inferences=0, executions=0, queue_ns=0, compute_ns=0), at=1.0)
    insight = batching_insight(idle)
    assert (insight.batch_size, insight.queue_share, insight.requests_per_second, insight.basis) == (None, None, None, "")
    assert StatsSample.from_triton([], at=1.0).requests == 0
