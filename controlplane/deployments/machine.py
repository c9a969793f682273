"""The rollout state machine: states, events and the transition table. Pure: no ORM, no I/O.

A deployment moves an endpoint from blue (the version it serves) to green. Workers and people
send events; `transition(state, event)` says the next state, or raises `Refused` when the state
does not allow the event. The services persist each transition with compare-and-set on the old
state, so two callers that race on one deployment cannot both move it.

Happy path:

    scheduled -due-> pending -begin-> validating -ok-> provisioning -ok-> verifying -ok->
    shifting -ok-> baking -ok-> analyzing -pass-> shifting (next step) ... -last-> promoting
    (or awaiting_approval -approve-> promoting) -ok-> succeeded -retire-> retired

Every exit from an active state goes through rolling_back: traffic returns to blue first, then
green is unloaded. Its end state depends on why it started (the `cause`): a breach, the deadline
or a person's roll back end in rolled_back, an abort in aborted, an infrastructure error in
failed. A rollback that cannot finish is rollback_failed, which the UI makes loud.
"""
from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    SCHEDULED = "scheduled"  # waits for its start time; can be cancelled
    PENDING = "pending"  # due, waiting for a worker
    VALIDATING = "validating"  # config, quota with the surge, target servers ready
    PROVISIONING = "provisioning"  # green loads on its servers, in parallel; wait for READY
    VERIFYING = "verifying"  # a warm-up inference through each green server
    SHIFTING = "shifting"  # the step's traffic share is published; wait for every gateway replica
    BAKING = "baking"  # the step's bake time runs
    ANALYZING = "analyzing"  # gates are evaluated every interval until they pass or breach
    PAUSED = "paused"  # no data (too little traffic) or an inconclusive verdict; says why
    AWAITING_APPROVAL = "awaiting_approval"  # every step passed; a person approves the promotion
    PROMOTING = "promoting"  # 100% to green and the label moves; wait for every replica
    SUCCEEDED = "succeeded"  # blue stays loaded through the rollback window
    RETIRED = "retired"  # blue unloaded, its reservation released
    ROLLING_BACK = "rolling_back"  # traffic back to blue, then green unloaded
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"  # an infrastructure error that retries could not fix
    ROLLBACK_FAILED = "rollback_failed"  # the rollback itself could not finish: loud
    CANCELLED = "cancelled"  # a scheduled deployment cancelled before it started


class Event(StrEnum):
    DUE = "due"  # the schedule's start time came
    CANCEL = "cancel"
    BEGIN = "begin"  # a worker takes a pending deployment
    OK = "ok"  # the current step's work is done
    PASS = "pass"  # every gate passed (analyzing), more steps remain
    LAST_PASS = "last_pass"  # every gate passed on the last step
    HOLD = "hold"  # every gate passed on the last step, and a person must approve the promotion
    NO_DATA = "no_data"  # fewer requests than the minimum, or a gate without a value
    BREACH = "breach"  # a gate failed as many evaluations in a row as its threshold
    RESUME = "resume"
    APPROVE = "approve"
    PROMOTE = "promote"  # a person skips the remaining steps
    ROLLBACK = "rollback"  # a person rolls back (after success: the fast rollback)
    ABORT = "abort"
    DEADLINE = "deadline"
    ERROR = "error"  # an infrastructure error that retries could not fix
    RETIRE = "retire"  # the rollback window is over
    RETRY = "retry"  # after failed or rollback_failed


class Cause(StrEnum):
    """Why a rollback started; it decides where the rollback ends."""

    BREACH = "breach"
    DEADLINE = "deadline"
    ROLLBACK = "rollback"
    ABORT = "abort"
    ERROR = "error"


# No worker acts on these, and they do not hold the endpoint. A person may still retry a failed
# deployment (it starts again from pending).
TERMINAL = frozenset({State.RETIRED, State.ROLLED_BACK, State.ABORTED, State.FAILED, State.CANCELLED})
# Not over yet. All of these but succeeded hold the endpoint (models.HOLDING: the database allows
# one per endpoint); a succeeded one has moved its label already, so the next deployment may start
# during its rollback window, and its fast rollback is then refused by the same constraint.
ACTIVE = frozenset(State) - TERMINAL
# Before green takes traffic: an approval or a promotion makes no sense yet.
PREPARING = frozenset({State.PENDING, State.VALIDATING, State.PROVISIONING, State.VERIFYING})
# Green may carry traffic: the steps, their pauses and the approval.
RUNNING = frozenset({State.SHIFTING, State.BAKING, State.ANALYZING, State.PAUSED, State.AWAITING_APPROVAL})
# Where abort, a roll back, the deadline, a breach or an error lead to rolling_back.
CAN_ROLL_BACK = PREPARING | RUNNING | {State.PROMOTING}
# The states whose work a worker carries out (the others wait for a person, the clock or nothing).
WORKER_STATES = frozenset({
    State.PENDING, State.VALIDATING, State.PROVISIONING, State.VERIFYING, State.SHIFTING, State.BAKING,
    State.ANALYZING, State.PROMOTING, State.SUCCEEDED, State.ROLLING_BACK,
})

ROLLBACK_END = {
    Cause.BREACH: State.ROLLED_BACK,
    Cause.DEADLINE: State.ROLLED_BACK,
    Cause.ROLLBACK: State.ROLLED_BACK,
    Cause.ABORT: State.ABORTED,
    Cause.ERROR: State.FAILED,
}
CAUSE_OF = {
    Event.BREACH: Cause.BREACH, Event.DEADLINE: Cause.DEADLINE, Event.ROLLBACK: Cause.ROLLBACK,
    Event.ABORT: Cause.ABORT, Event.ERROR: Cause.ERROR,
}


def _table() -> dict[tuple[State, Event], State]:
    t: dict[tuple[State, Event], State] = {
        (State.SCHEDULED, Event.DUE): State.PENDING,
        (State.SCHEDULED, Event.CANCEL): State.CANCELLED,
        (State.PENDING, Event.BEGIN): State.VALIDATING,
        (State.VALIDATING, Event.OK): State.PROVISIONING,
        (State.PROVISIONING, Event.OK): State.VERIFYING,
        (State.VERIFYING, Event.OK): State.SHIFTING,
        (State.SHIFTING, Event.OK): State.BAKING,
        (State.BAKING, Event.OK): State.ANALYZING,
        (State.ANALYZING, Event.PASS): State.SHIFTING,
        (State.ANALYZING, Event.LAST_PASS): State.PROMOTING,
        (State.ANALYZING, Event.HOLD): State.AWAITING_APPROVAL,
        (State.ANALYZING, Event.NO_DATA): State.PAUSED,
        (State.PAUSED, Event.RESUME): State.ANALYZING,
        (State.AWAITING_APPROVAL, Event.APPROVE): State.PROMOTING,
        (State.PROMOTING, Event.OK): State.SUCCEEDED,
        (State.SUCCEEDED, Event.RETIRE): State.RETIRED,
        (State.SUCCEEDED, Event.ROLLBACK): State.ROLLING_BACK,  # the fast rollback, within the window
        (State.ROLLBACK_FAILED, Event.RETRY): State.ROLLING_BACK,
        (State.FAILED, Event.RETRY): State.PENDING,
    }
    for state in RUNNING:
        t[(state, Event.PROMOTE)] = State.PROMOTING
    for state in CAN_ROLL_BACK:
        for event in (Event.ROLLBACK, Event.ABORT, Event.DEADLINE, Event.ERROR):
            t[(state, event)] = State.ROLLING_BACK
    for state in (State.ANALYZING, State.PAUSED):
        t[(state, Event.BREACH)] = State.ROLLING_BACK
    # The data-plane guard (a gateway stopped sending to a failing green) can trip while green takes
    # any share of traffic, not only while the gates are analyzed.
    for state in (State.SHIFTING, State.BAKING, State.AWAITING_APPROVAL, State.PROMOTING):
        t[(state, Event.BREACH)] = State.ROLLING_BACK
    t[(State.ROLLING_BACK, Event.OK)] = State.ROLLED_BACK  # or aborted or failed: transition() reads the cause
    t[(State.ROLLING_BACK, Event.ERROR)] = State.ROLLBACK_FAILED
    return t


TRANSITIONS = _table()


class Refused(Exception):
    """The state does not allow the event (the API answers 409)."""

    def __init__(self, state: State, event: Event):
        super().__init__(f"a deployment that is {describe(state)} cannot {VERB.get(event, event.value)}")
        self.state, self.event = state, event


VERB = {
    Event.CANCEL: "be cancelled (only a scheduled one can)",
    Event.RESUME: "be resumed (only a paused one can)",
    Event.APPROVE: "be approved (only one awaiting approval can)",
    Event.PROMOTE: "be promoted (only while green takes traffic)",
    Event.ROLLBACK: "be rolled back",
    Event.ABORT: "be aborted",
    Event.RETRY: "be retried (only a failed one, or a failed rollback, can)",
}


def describe(state: State) -> str:
    return state.value.replace("_", " ")


def allowed(state: State, event: Event) -> bool:
    return (State(state), Event(event)) in TRANSITIONS


def transition(state: State, event: Event, *, cause: Cause | None = None) -> State:
    """The state after ``event`` in ``state``. Leaving rolling_back with ok needs the rollback's
    ``cause``; every other transition ignores it. Raises Refused."""
    state, event = State(state), Event(event)
    if (state, event) not in TRANSITIONS:
        raise Refused(state, event)
    if state == State.ROLLING_BACK and event == Event.OK:
        if cause is None:
            raise ValueError("leaving rolling_back needs the rollback's cause")
        return ROLLBACK_END[Cause(cause)]
    return TRANSITIONS[(state, event)]


def cause_of(event: Event) -> Cause | None:
    """The rollback cause an event carries (None for events that do not start a rollback)."""
    return CAUSE_OF.get(Event(event))


def actions_allowed(state: State) -> list[str]:
    """The person-facing actions the state allows, in the order the UI shows them."""
    state = State(state)
    return [e.value for e in (Event.PROMOTE, Event.APPROVE, Event.RESUME, Event.ROLLBACK, Event.ABORT, Event.RETRY,
                              Event.CANCEL) if (state, e) in TRANSITIONS]
