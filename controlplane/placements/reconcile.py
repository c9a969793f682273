"""The reconciler's decision for one placement target. Pure: no ORM, no I/O.

The reconciler observes a server (``services/reconciler.py``), classifies each target with
``drift.py``, and asks ``decide`` what to do; the service then carries the action out with a
compare-and-set and an audit event. Models that no placement wants are never touched here: they
may be serving traffic someone loaded by hand, and unloading on a guess would be an outage.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controlplane.placements.models import Drift, TargetState

# A settled target's drift is worth recording; a target in flight is expected to differ.
SHOWS_DRIFT = (TargetState.READY, TargetState.FAILED, TargetState.STUCK)
REAPPLY_DRIFTS = (Drift.MISSING, Drift.WRONG_VERSION, Drift.WRONG_CONFIG)


class Action(StrEnum):
    NOTHING = "nothing"
    REMOVE = "remove"  # an unload finished on Triton: REMOVED, GPUs released
    UNLOAD_AGAIN = "unload_again"  # the unload was lost (Triton is idle and still has it): send it again
    STUCK_UNLOADING = "stuck_unloading"  # UNLOADING on Triton for longer than the stuck timeout
    STUCK_LOADING = "stuck_loading"  # LOADING on Triton for longer than the stuck timeout
    REAPPLY_DRIFT = "reapply_drift"  # READY, but Triton lost it (a restart) or serves something else
    REAPPLY_ABANDONED = "reapply_abandoned"  # our LOADING's lease ran out and Triton is idle: its worker died
    LOAD_PENDING = "load_pending"  # PENDING past the grace period: its apply task was lost
    ADOPT = "adopt"  # Triton already serves exactly what we want: READY
    REPORT_STUCK = "report_stuck"  # still stuck; retrying is a person's decision

    @property
    def loads(self) -> bool:
        return self in (Action.REAPPLY_DRIFT, Action.REAPPLY_ABANDONED, Action.LOAD_PENDING)


@dataclass(frozen=True)
class Decision:
    action: Action
    record_drift: bool  # store the observed drift on the target (changes of drift are audited)


def decide(*, state: str, placement_active: bool, reachable: bool, drift: str, loaded: bool, busy: bool,
           age: float, stuck_after: float, grace: float, lease_expired: bool) -> Decision:
    """What the reconciler does with one target.

    ``drift`` is ``drift.classify``'s verdict for the server's rows, ``loaded`` whether any
    version of the model is READY, LOADING or UNLOADING there, ``busy`` whether one is LOADING or
    UNLOADING, ``age`` the seconds since the target's state last changed, and ``lease_expired``
    whether the worker that claimed a LOADING target stopped renewing its lease. Nothing is ever
    loaded while Triton is busy with the model, nor for a removed placement, nor over a FAILED
    target (a retry is a person's decision).
    """
    if state == TargetState.REMOVED:
        return Decision(Action.NOTHING, False)
    if not reachable:
        return Decision(Action.NOTHING, state in SHOWS_DRIFT)  # drift: unreachable
    leaving = state == TargetState.UNLOADING or (state == TargetState.STUCK and not placement_active)
    if leaving:
        if not loaded:
            return Decision(Action.REMOVE, False)
        if busy and age > stuck_after and state == TargetState.UNLOADING:
            return Decision(Action.STUCK_UNLOADING, False)
        if not busy and age > grace:
            return Decision(Action.UNLOAD_AGAIN, False)
        return Decision(Action.NOTHING, False)

    record = state in SHOWS_DRIFT
    if not placement_active:
        return Decision(Action.NOTHING, record)  # wanted by nobody: never load or adopt it
    if state == TargetState.READY:
        if drift in REAPPLY_DRIFTS and not busy:
            return Decision(Action.REAPPLY_DRIFT, record)
        return Decision(Action.NOTHING, record)
    if state in (TargetState.LOADING, TargetState.STUCK, TargetState.PENDING) and drift == Drift.NONE and loaded and not busy:
        return Decision(Action.ADOPT, record)
    if state == TargetState.LOADING and busy and age > stuck_after:
        return Decision(Action.STUCK_LOADING, record)
    if state == TargetState.LOADING and not busy and lease_expired:
        return Decision(Action.REAPPLY_ABANDONED, record)
    if state == TargetState.PENDING and age > grace and not busy:
        return Decision(Action.LOAD_PENDING, record)
    if state == TargetState.STUCK:
        return Decision(Action.REPORT_STUCK, record)
    return Decision(Action.NOTHING, record)
