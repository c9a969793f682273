"""Where a deployment stands, as its page shows it: the current step, the bake's time left, the
overall progress, and each configured gate against its limit. Pure: callers pass what they read.

Overall progress is measured in milestones, not in projected time: preparing green takes the
first 10%, the steps share 10-90% equally (each one shifting, baking, then evaluating its
gates), the promotion and the rollback window the rest. A rollback stops the bar where it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controlplane.deployments.machine import State

PREPARING_AT = {
    State.SCHEDULED: 0, State.PENDING: 0, State.VALIDATING: 2, State.PROVISIONING: 5, State.VERIFYING: 8,
}
STEPS_FROM, STEPS_TO = 10, 90
BAKING_SHARE, ANALYZING_SHARE = 0.8, 0.9  # of a step's slot: the bake, then the gate evaluations
# States whose progress stops where the rollout was; the bar says so.
HALTED = frozenset({
    State.ROLLING_BACK, State.ROLLED_BACK, State.ABORTED, State.FAILED, State.ROLLBACK_FAILED, State.CANCELLED,
})
# After a step's bake: its gates are judged (or were), so the bake is complete.
BAKED = frozenset({State.ANALYZING, State.PAUSED, State.AWAITING_APPROVAL, State.PROMOTING, State.SUCCEEDED,
                   State.RETIRED})

STAGE = {
    State.SCHEDULED: "waits for its start time",
    State.PENDING: "waits for a worker",
    State.VALIDATING: "checking config, servers and quota",
    State.PROVISIONING: "loading green",
    State.VERIFYING: "warm-up inference through green",
    State.SHIFTING: "waiting for every gateway to serve the new share",
    State.BAKING: "baking",
    State.ANALYZING: "evaluating the gates",
    State.PAUSED: "paused",
    State.AWAITING_APPROVAL: "every step passed; waiting for approval",
    State.PROMOTING: "promoting: 100% to green, the label moves",
    State.SUCCEEDED: "succeeded; blue stays loaded through the rollback window",
    State.RETIRED: "done; blue unloaded",
    State.ROLLING_BACK: "rolling back: traffic back to blue, then green unloaded",
    State.ROLLED_BACK: "rolled back",
    State.ABORTED: "aborted",
    State.FAILED: "failed",
    State.ROLLBACK_FAILED: "the rollback could not finish",
    State.CANCELLED: "cancelled before it started",
}


@dataclass(frozen=True)
class Progress:
    state: str
    stage: str  # what the rollout is doing, in words
    step_number: int  # the current step, from 1; 0 before the first
    step_count: int
    step_percent: int | None  # green's share the current step asks for
    traffic_percent: int  # green's share in the routing table now
    bake_s: int | None  # the current step's bake
    bake_left_s: int | None  # seconds left in the bake; None when no bake runs or waits
    bake_percent: int  # how much of the bake has run, 0-100
    overall_percent: int  # 0-100
    halted: bool  # stopped by a rollback, an abort, an error or a cancel

    @property
    def step_text(self) -> str:
        if not self.step_count:
            return "no steps"
        if not self.step_number:
            return f"before step 1 of {self.step_count}"
        return f"step {self.step_number} of {self.step_count}"


def deployment_progress(*, state: str, steps: list[dict], step_index: int, step_started_at: datetime | None,
                        traffic_percent: int, now: datetime) -> Progress:
    """``steps`` as stored ([{"percent", "bake_s"}, ...]); ``step_started_at`` when the current
    step's bake began (set once every gateway serves its share)."""
    state = State(state)
    count = len(steps)
    current = steps[step_index] if 0 <= step_index < count else None
    bake_s = int(current["bake_s"]) if current else None
    bake_left, bake_percent = None, 0
    if current is not None:
        if state == State.SHIFTING:
            bake_left = bake_s
        elif state == State.BAKING and step_started_at is not None:
            elapsed = max((now - step_started_at).total_seconds(), 0.0)
            bake_left = max(round(bake_s - elapsed), 0)
            bake_percent = 100 if not bake_s else min(int(elapsed * 100 / bake_s), 100)
        elif state in BAKED:
            bake_left, bake_percent = 0, 100
    return Progress(
        state=state.value, stage=STAGE[state], step_number=step_index + 1 if current else 0, step_count=count,
        step_percent=int(current["percent"]) if current else None, traffic_percent=traffic_percent,
        bake_s=bake_s, bake_left_s=bake_left, bake_percent=bake_percent,
        overall_percent=_overall(state, step_index, count, bake_percent), halted=state in HALTED,
    )


def _overall(state: State, step_index: int, count: int, bake_percent: int) -> int:
    if state in PREPARING_AT:
        return PREPARING_AT[state]
    if state in (State.SUCCEEDED, State.RETIRED):
        return 100
    if state == State.PROMOTING:
        return 95
    if state == State.AWAITING_APPROVAL:
        return STEPS_TO
    if not count or step_index < 0:
        return STEPS_FROM if state not in HALTED else 0
    slot = (STEPS_TO - STEPS_FROM) / count
    within = {State.SHIFTING: 0.0, State.BAKING: BAKING_SHARE * bake_percent / 100}.get(state, ANALYZING_SHARE)
    return int(STEPS_FROM + slot * (min(step_index, count - 1) + within))


def duration_text(seconds: float | None) -> str:
    """A short duration: "42 s", "3 min 5 s", "2 h 4 min"."""
    if seconds is None:
        return "—"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 // 60 else f"{s // 3600} h"


# -- gates against their limits ------------------------------------------------------------------


@dataclass(frozen=True)
class GateRow:
    """One configured gate and its latest evaluation (None: not evaluated yet)."""

    name: str  # as evaluations name it: error_ratio, p99_ms, p99_vs_blue, custom:<name>, guard
    title: str
    limit_text: str
    value_text: str
    requests: float | None
    min_requests: int
    verdict: str  # pass, fail, no_data, or "" before the first evaluation
    at: datetime | None
    detail: str


def format_value(gate: str, value: float | None) -> str:
    """A gate's value in the unit people read it in."""
    if value is None:
        return "—"
    if gate in ("error_ratio", "guard"):
        return f"{value * 100:.2f}%"
    if gate == "p99_ms":
        return f"{value:.1f} ms"
    if gate == "p99_vs_blue":
        return f"{value:.2f}×"
    return f"{value:.4g}"


def configured_gates(gates: dict) -> list[tuple[str, str, str]]:
    """(name, title, limit in words) for each gate the stored spec (spec.Gates as a dict) configures."""
    out = []
    if gates.get("max_error_ratio") is not None:
        out.append(("error_ratio", "Error rate (green's 5xx share)", f"≤ {format_value('error_ratio', gates['max_error_ratio'])}"))
    if gates.get("max_p99_ms") is not None:
        out.append(("p99_ms", "Latency p99", f"≤ {format_value('p99_ms', gates['max_p99_ms'])}"))
    if gates.get("max_p99_ratio") is not None:
        out.append(("p99_vs_blue", "Latency p99 against blue's", f"≤ {format_value('p99_vs_blue', gates['max_p99_ratio'])}"))
    for custom in gates.get("custom") or ():
        out.append((f"custom:{custom['name']}", f"Custom: {custom['name']}", f"≤ {custom['max']:.4g}"))
    if gates.get("guard", True) and gates.get("max_error_ratio") is not None:
        out.append(("guard", "Gateway guard (stops green at once)",
                    f"trips above {format_value('guard', gates['max_error_ratio'])} errors"))
    return out


def gate_board(gates: dict, latest: dict) -> list[GateRow]:
    """Each configured gate with its latest evaluation. ``latest`` maps a gate's name to an object
    with value, requests, verdict, at and detail (a GateEvaluation row)."""
    rows = []
    for name, title, limit in configured_gates(gates):
        e = latest.get(name)
        rows.append(GateRow(
            name=name, title=title, limit_text=limit,
            value_text=format_value(name, e.value) if e is not None else "—",
            requests=e.requests if e is not None else None, min_requests=int(gates.get("min_requests") or 0),
            verdict=e.verdict if e is not None else "", at=e.at if e is not None else None,
            detail=e.detail if e is not None else ("armed: not tripped" if name == "guard" else "not evaluated yet"),
        ))
    return rows
