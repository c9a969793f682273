"""Batching insight from Triton's cumulative statistics. Pure: no ORM, no I/O.

Triton counts since the model was loaded. Rates need two samples; the batch size and queue share
come from the difference too when there was traffic in between (so they describe now, not the
whole life of the model), and from the totals otherwise.

Note: a Python model that answers with an error response is counted by Triton as a success, so
requests per second include those.
"""
from __future__ import annotations

from dataclasses import dataclass

PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class StatsSample:
    at: float  # wall clock, seconds
    requests: int  # success + fail
    inferences: int  # inference_count: batch elements
    executions: int  # execution_count: model executions (one per dynamic batch)
    queue_ns: int
    busy_ns: int  # queue + compute_input + compute_infer + compute_output

    @classmethod
    def from_triton(cls, model_stats: list[dict], *, at: float) -> StatsSample:
        """Sum of every loaded version's statistics (Triton's model_stats list)."""
        requests = inferences = executions = queue = busy = 0
        for entry in model_stats:
            stats = entry.get("inference_stats") or {}
            requests += _count(stats, "success") + _count(stats, "fail")
            inferences += int(entry.get("inference_count") or 0)
            executions += int(entry.get("execution_count") or 0)
            queue += _ns(stats, "queue")
            busy += sum(_ns(stats, phase) for phase in PHASES)
        return cls(at=at, requests=requests, inferences=inferences, executions=executions, queue_ns=queue, busy_ns=busy)

    def minus(self, earlier: StatsSample) -> StatsSample | None:
        """The traffic between two samples, or None if the counters went back (a reload)."""
        delta = StatsSample(
            at=self.at - earlier.at,
            requests=self.requests - earlier.requests,
            inferences=self.inferences - earlier.inferences,
            executions=self.executions - earlier.executions,
            queue_ns=self.queue_ns - earlier.queue_ns,
            busy_ns=self.busy_ns - earlier.busy_ns,
        )
        if delta.at <= 0 or min(delta.requests, delta.inferences, delta.executions, delta.queue_ns, delta.busy_ns) < 0:
            return None
        return delta

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _count(stats: dict, key: str) -> int:
    return int((stats.get(key) or {}).get("count") or 0)


def _ns(stats: dict, key: str) -> int:
    return int((stats.get(key) or {}).get("ns") or 0)


@dataclass(frozen=True)
class BatchingInsight:
    batch_size: float | None  # inferences per execution
    queue_share: float | None  # of the time requests spent in Triton, the share spent queueing
    requests_per_second: float | None  # None without a window
    window_seconds: float | None
    basis: str  # "window": from the traffic in the window; "since load": from the totals; "" no traffic
    requests: int  # requests behind batch_size and queue_share

    @property
    def queue_percent(self) -> float | None:
        return None if self.queue_share is None else 100.0 * self.queue_share


def _ratios(sample: StatsSample) -> tuple[float | None, float | None]:
    batch = sample.inferences / sample.executions if sample.executions > 0 else None
    share = sample.queue_ns / sample.busy_ns if sample.busy_ns > 0 else None
    return batch, share


def batching_insight(current: StatsSample, previous: StatsSample | None = None) -> BatchingInsight:
    delta = current.minus(previous) if previous is not None else None
    rps = window = None
    if delta is not None:
        window = delta.at
        rps = delta.requests / delta.at
        if delta.executions > 0:
            batch, share = _ratios(delta)
            return BatchingInsight(batch, share, rps, window, "window", delta.requests)
    batch, share = _ratios(current)
    basis = "since load" if current.executions > 0 else ""
    return BatchingInsight(batch, share, rps, window, basis, current.requests)
