"""Batching insight, from Prometheus's recorded rates or from Triton's cumulative statistics.
Pure: no ORM, no I/O.

With Prometheus configured, the numbers are its one-minute rates per (server, model, version),
summed here over a placement's versions (`insight_from_rates`). Without it, a periodic task
samples Triton's statistics and the numbers come from two samples (`batching_insight`).

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
    basis: str  # "window": between two samples; "since load": from the totals; "prometheus": its rates; "" no traffic
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


PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class VersionRates:
    """Prometheus's rates for one version on one server; None where it has no value."""

    requests: float | None  # per second
    inferences: float | None  # per second
    batch_size: float | None  # inferences per execution
    queue_share: float | None  # 0..1


def insight_from_rates(rates: list[VersionRates], *, window_seconds: float) -> BatchingInsight:
    """One server's insight over the versions it serves: rates add up, the batch size is total
    inferences over total executions, the queue share is weighted by requests. No value stays
    None: a version Prometheus knows nothing about adds nothing, and nothing at all is no data."""
    requests = [r.requests for r in rates if r.requests is not None]
    inferences = executions = 0.0
    for r in rates:
        if r.inferences is not None and r.batch_size:
            inferences += r.inferences
            executions += r.inferences / r.batch_size
    weighted = [(r.queue_share, r.requests) for r in rates if r.queue_share is not None and r.requests]
    weight = sum(w for _, w in weighted)
    rps = sum(requests) if requests else None
    return BatchingInsight(
        batch_size=inferences / executions if executions > 0 else None,
        queue_share=sum(q * w for q, w in weighted) / weight if weight > 0 else None,
        requests_per_second=rps,
        window_seconds=window_seconds if rps is not None else None,
        basis=PROMETHEUS if rates else "",
        requests=round((rps or 0) * window_seconds),
    )
