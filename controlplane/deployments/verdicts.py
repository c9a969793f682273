"""Gate verdicts: from readings of the metrics to pass, fail or no data, and to the rollout's next
event. Pure: the readings are taken elsewhere (services through metrics.queries).

No data never passes: a gate whose variant served fewer than `min_requests` in the window, or
whose value is absent, says no data, and the rollout pauses and says why. A failing gate with
data outweighs one without: a bad green with little traffic is still a bad green.
"""
from __future__ import annotations

from dataclasses import dataclass

from controlplane.deployments.machine import Event
from controlplane.deployments.spec import Gates


@dataclass(frozen=True)
class Reading:
    """What the metrics said for one variant over one window: value None means absent."""

    value: float | None
    requests: float


@dataclass(frozen=True)
class Evaluation:
    gate: str
    value: float | None
    limit: float
    requests: float
    window_s: int
    verdict: str  # "pass", "fail" or "no_data"
    detail: str = ""


def _judge(gate: str, reading: Reading, limit: float, window_s: int, min_requests: int, *, scale: float = 1.0,
           unit: str = "", detail: str = "") -> Evaluation:
    value = None if reading.value is None else reading.value * scale
    if reading.requests < min_requests:
        why = f"{reading.requests:.0f} requests in {window_s} s, fewer than the minimum of {min_requests}"
        return Evaluation(gate, value, limit, reading.requests, window_s, "no_data", why)
    if value is None:
        return Evaluation(gate, None, limit, reading.requests, window_s, "no_data", f"no value for {gate} yet")
    verdict = "pass" if value <= limit else "fail"
    text = detail or f"{value:.4g}{unit} {'≤' if verdict == 'pass' else '>'} {limit:.4g}{unit}"
    return Evaluation(gate, value, limit, reading.requests, window_s, verdict, text)


def judge_gates(gates: Gates, *, window_s: int, green_errors: Reading | None = None, green_p99: Reading | None = None,
                blue_p99: Reading | None = None, custom: dict[str, Reading] | None = None) -> list[Evaluation]:
    """Judge every configured gate. Latencies are read in seconds and judged in milliseconds."""
    out = []
    n = gates.min_requests
    if gates.max_error_ratio is not None:
        out.append(_judge("error_ratio", green_errors or Reading(None, 0), gates.max_error_ratio, window_s, n))
    if gates.max_p99_ms is not None:
        out.append(_judge("p99_ms", green_p99 or Reading(None, 0), gates.max_p99_ms, window_s, n, scale=1000, unit=" ms"))
    if gates.max_p99_ratio is not None:
        green, blue = green_p99 or Reading(None, 0), blue_p99 or Reading(None, 0)
        if blue.requests < n or not blue.value:
            why = f"blue has {blue.requests:.0f} requests in the window, fewer than the minimum of {n}" \
                if blue.requests < n else "no p99 for blue yet"
            out.append(Evaluation("p99_vs_blue", None, gates.max_p99_ratio, green.requests, window_s, "no_data", why))
        else:
            ratio = None if green.value is None else green.value / blue.value
            detail = "" if ratio is None else (
                f"green p99 {green.value * 1000:.1f} ms is {ratio:.2f}× blue's {blue.value * 1000:.1f} ms"
                f" ({'≤' if ratio <= gates.max_p99_ratio else '>'} {gates.max_p99_ratio:g}×)")
            out.append(_judge("p99_vs_blue", Reading(ratio, green.requests), gates.max_p99_ratio, window_s, n,
                              detail=detail))
    for gate in gates.custom:
        reading = (custom or {}).get(gate.name, Reading(None, 0))
        # A custom query has no request count of its own: it rests on green's requests.
        requests = green_errors.requests if green_errors is not None else reading.requests
        out.append(_judge(f"custom:{gate.name}", Reading(reading.value, requests), gate.max, window_s, n))
    return out


def overall(evaluations: list[Evaluation]) -> str:
    """fail if any gate failed, else no_data if any had none, else pass."""
    verdicts = {e.verdict for e in evaluations}
    if "fail" in verdicts:
        return "fail"
    if "no_data" in verdicts or not evaluations:
        return "no_data"
    return "pass"


def next_event(verdict: str, *, failed_in_row: int, failures_to_breach: int, last_step: bool,
               approval_required: bool) -> Event | None:
    """The event one evaluation leads to; None means evaluate again after the interval (a failure
    below the breach threshold)."""
    if verdict == "fail":
        return Event.BREACH if failed_in_row >= failures_to_breach else None
    if verdict == "no_data":
        return Event.NO_DATA
    if not last_step:
        return Event.PASS
    return Event.HOLD if approval_required else Event.LAST_PASS


def no_data_reason(evaluations: list[Evaluation]) -> str:
    missing = [e for e in evaluations if e.verdict == "no_data"]
    return "No data: " + "; ".join(f"{e.gate}: {e.detail}" for e in missing) + ". No data never passes; resume when traffic flows."
