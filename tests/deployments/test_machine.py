"""deployments.machine: every (state, event) pair against a table written out here from the design
(ARCHITECTURE.md, "Rollouts: the state machine") and the module's docstrings, not from
machine.TRANSITIONS, so a disagreement between the two shows up as a failure."""
import itertools
import random
from collections import deque

import pytest

from controlplane.deployments import machine
from controlplane.deployments.machine import Cause, Event, Refused, State, transition

S, E = State, Event
BY_CAUSE = "by cause"  # rolling_back + ok: where it ends depends on why the rollback started

# Leaving any state that may have loaded green (and, from shifting on, routed traffic to it).
_OUT = {E.ROLLBACK: S.ROLLING_BACK, E.ABORT: S.ROLLING_BACK, E.DEADLINE: S.ROLLING_BACK, E.ERROR: S.ROLLING_BACK}
# Green takes a share of traffic: the gates (or the gateway's guard) can breach.
_TRAFFIC_OUT = {**_OUT, E.BREACH: S.ROLLING_BACK}

EXPECTED: dict[State, dict[Event, State | str]] = {
    S.SCHEDULED: {E.DUE: S.PENDING, E.CANCEL: S.CANCELLED},
    S.PENDING: {E.BEGIN: S.VALIDATING, **_OUT},
    S.VALIDATING: {E.OK: S.PROVISIONING, **_OUT},
    S.PROVISIONING: {E.OK: S.VERIFYING, **_OUT},
    S.VERIFYING: {E.OK: S.SHIFTING, **_OUT},
    S.SHIFTING: {E.OK: S.BAKING, E.PROMOTE: S.PROMOTING, **_TRAFFIC_OUT},
    S.BAKING: {E.OK: S.ANALYZING, E.PROMOTE: S.PROMOTING, **_TRAFFIC_OUT},
    S.ANALYZING: {
        E.PASS: S.SHIFTING, E.LAST_PASS: S.PROMOTING, E.HOLD: S.AWAITING_APPROVAL, E.NO_DATA: S.PAUSED,
        E.PROMOTE: S.PROMOTING, **_TRAFFIC_OUT,
    },
    S.PAUSED: {E.RESUME: S.ANALYZING, E.PROMOTE: S.PROMOTING, **_TRAFFIC_OUT},
    S.AWAITING_APPROVAL: {E.APPROVE: S.PROMOTING, E.PROMOTE: S.PROMOTING, **_TRAFFIC_OUT},
    S.PROMOTING: {E.OK: S.SUCCEEDED, **_TRAFFIC_OUT},
    S.SUCCEEDED: {E.RETIRE: S.RETIRED, E.ROLLBACK: S.ROLLING_BACK},  # the fast rollback, in the window
    S.ROLLING_BACK: {E.OK: BY_CAUSE, E.ERROR: S.ROLLBACK_FAILED},
    S.ROLLBACK_FAILED: {E.RETRY: S.ROLLING_BACK},
    S.RETIRED: {},
    S.ROLLED_BACK: {},
    S.ABORTED: {},
    S.FAILED: {E.RETRY: S.PENDING},  # Event.RETRY: "after failed or rollback_failed"
    S.CANCELLED: {},
}
END_OF = {
    Cause.BREACH: S.ROLLED_BACK, Cause.DEADLINE: S.ROLLED_BACK, Cause.ROLLBACK: S.ROLLED_BACK,
    Cause.ABORT: S.ABORTED, Cause.ERROR: S.FAILED,
}
FINISHED = {S.RETIRED, S.ROLLED_BACK, S.ABORTED, S.FAILED, S.CANCELLED}


def _expected(state, event, cause=Cause.BREACH):
    nxt = EXPECTED[state].get(event)
    return END_OF[cause] if nxt == BY_CAUSE else nxt


def test_the_expected_table_covers_every_state():
    assert set(EXPECTED) == set(State)


@pytest.mark.parametrize("state", list(State))
def test_every_event_in_every_state(state):
    """For each state, every event: the expected next state, or Refused. Collects every
    disagreement of the state before failing, so one run shows them all."""
    wrong = []
    for event in Event:
        want = _expected(state, event)
        try:
            got = transition(state, event, cause=Cause.BREACH)
        except Refused as refused:
            assert (refused.state, refused.event) == (state, event)
            got = None
        if got != want or machine.allowed(state, event) is not (want is not None):
            wrong.append(f"{state.value} + {event.value}: expected {want}, got {got or 'Refused'}")
    assert wrong == []


def test_the_allowed_pairs_are_exactly_the_expected_ones():
    """One readable diff of every disagreement at once."""
    expected = {(s, e) for s in EXPECTED for e in EXPECTED[s]}
    actual = {(s, e) for s, e in itertools.product(State, Event) if machine.allowed(s, e)}
    assert sorted(actual - expected) == [] and sorted(expected - actual) == []


@pytest.mark.parametrize("cause", list(Cause))
def test_a_rollback_ends_by_its_cause(cause):
    assert transition(S.ROLLING_BACK, E.OK, cause=cause) == END_OF[cause]
    assert transition("rolling_back", "ok", cause=cause.value) == END_OF[cause]


def test_a_breach_the_deadline_or_a_roll_back_end_rolled_back_an_abort_aborted_an_error_failed():
    assert {c: transition(S.ROLLING_BACK, E.OK, cause=c) for c in Cause} == {
        Cause.BREACH: S.ROLLED_BACK, Cause.DEADLINE: S.ROLLED_BACK, Cause.ROLLBACK: S.ROLLED_BACK,
        Cause.ABORT: S.ABORTED, Cause.ERROR: S.FAILED,
    }


def test_leaving_rolling_back_without_a_cause_raises():
    with pytest.raises(ValueError, match="cause"):
        transition(S.ROLLING_BACK, E.OK)
    with pytest.raises(ValueError):
        transition(S.ROLLING_BACK, E.OK, cause="boredom")


def test_a_rollback_that_cannot_finish_fails_loudly_whatever_its_cause():
    for cause in [None, *Cause]:
        assert transition(S.ROLLING_BACK, E.ERROR, cause=cause) == S.ROLLBACK_FAILED


@pytest.mark.parametrize("cause", list(Cause))
def test_the_cause_is_ignored_everywhere_else(cause):
    for state, events in EXPECTED.items():
        for event, nxt in events.items():
            if nxt != BY_CAUSE:
                assert transition(state, event, cause=cause) == nxt
                assert transition(state, event) == nxt


def test_cause_of_names_the_events_that_start_a_rollback():
    assert {e: machine.cause_of(e) for e in Event if machine.cause_of(e) is not None} == {
        E.BREACH: Cause.BREACH, E.DEADLINE: Cause.DEADLINE, E.ROLLBACK: Cause.ROLLBACK, E.ABORT: Cause.ABORT,
        E.ERROR: Cause.ERROR,
    }
    assert machine.cause_of("abort") == Cause.ABORT


def test_every_event_that_starts_a_rollback_carries_its_cause():
    """Only the retry of a failed rollback enters rolling_back without one: it carries on the cause
    the rollback started with, which the caller keeps."""
    entering = {(s, e) for s in EXPECTED for e, nxt in EXPECTED[s].items() if nxt == S.ROLLING_BACK}
    without = {(s, e) for s, e in entering if machine.cause_of(e) is None}
    assert without == {(S.ROLLBACK_FAILED, E.RETRY)}


def test_finished_states_accept_nothing_but_a_failed_one_can_be_retried():
    assert machine.TERMINAL == FINISHED
    for state in FINISHED - {S.FAILED}:
        assert [e for e in Event if machine.allowed(state, e)] == [], state
    assert [e for e in Event if machine.allowed(S.FAILED, e)] == [E.RETRY]
    assert transition(S.FAILED, E.RETRY) == S.PENDING


def test_active_is_every_state_not_finished():
    assert machine.ACTIVE == set(State) - FINISHED


@pytest.mark.parametrize("state", sorted(set(State) - FINISHED))
def test_every_active_state_has_a_way_out(state):
    if state == S.SCHEDULED:
        assert transition(state, E.CANCEL) == S.CANCELLED
    elif state == S.SUCCEEDED:
        assert transition(state, E.RETIRE) == S.RETIRED
        assert transition(state, E.ROLLBACK) == S.ROLLING_BACK
    elif state == S.ROLLBACK_FAILED:
        assert transition(state, E.RETRY) == S.ROLLING_BACK
    elif state == S.ROLLING_BACK:  # the worker's own work: it ends, or fails loudly
        assert transition(state, E.OK, cause=Cause.ABORT) == S.ABORTED
        assert transition(state, E.ERROR) == S.ROLLBACK_FAILED
    else:
        assert transition(state, E.ABORT) == S.ROLLING_BACK
        assert transition(state, E.ROLLBACK) == S.ROLLING_BACK
        assert transition(state, E.DEADLINE) == S.ROLLING_BACK


def _reachable(start):
    seen, frontier = {start}, deque([start])
    while frontier:
        state = frontier.popleft()
        for event in Event:
            if machine.allowed(state, event):
                nexts = set(END_OF.values()) if (state, event) == (S.ROLLING_BACK, E.OK) else {transition(state, event)}
                for nxt in nexts - seen:
                    seen.add(nxt)
                    frontier.append(nxt)
    return seen


def test_every_state_is_reachable_and_every_active_state_can_finish():
    assert _reachable(S.SCHEDULED) | _reachable(S.PENDING) == set(State)
    for state in set(State) - FINISHED:
        assert _reachable(state) & FINISHED, state


def test_the_named_groups_agree_with_the_table():
    def by(event):
        return {s for s in State if machine.allowed(s, event)}

    assert by(E.ABORT) == machine.CAN_ROLL_BACK == machine.PREPARING | machine.RUNNING | {S.PROMOTING}
    assert by(E.PROMOTE) == machine.RUNNING
    assert by(E.DEADLINE) == machine.CAN_ROLL_BACK
    assert machine.PREPARING == {S.PENDING, S.VALIDATING, S.PROVISIONING, S.VERIFYING}
    assert machine.RUNNING == {S.SHIFTING, S.BAKING, S.ANALYZING, S.PAUSED, S.AWAITING_APPROVAL}
    # Green takes no traffic while it is prepared: nothing can breach yet.
    assert by(E.BREACH) == machine.RUNNING | {S.PROMOTING}
    # A worker carries on exactly the states whose way forward is a worker's event.
    worker_events = {E.BEGIN, E.OK, E.PASS, E.LAST_PASS, E.HOLD, E.NO_DATA, E.RETIRE}
    assert machine.WORKER_STATES == {s for s in State if any(machine.allowed(s, e) for e in worker_events)}


ACTIONS = {
    S.SCHEDULED: ["cancel"],
    S.PENDING: ["rollback", "abort"],
    S.VALIDATING: ["rollback", "abort"],
    S.PROVISIONING: ["rollback", "abort"],
    S.VERIFYING: ["rollback", "abort"],
    S.SHIFTING: ["promote", "rollback", "abort"],
    S.BAKING: ["promote", "rollback", "abort"],
    S.ANALYZING: ["promote", "rollback", "abort"],
    S.PAUSED: ["promote", "resume", "rollback", "abort"],
    S.AWAITING_APPROVAL: ["promote", "approve", "rollback", "abort"],
    S.PROMOTING: ["rollback", "abort"],
    S.SUCCEEDED: ["rollback"],
    S.ROLLING_BACK: [],
    S.ROLLBACK_FAILED: ["retry"],
    S.RETIRED: [],
    S.ROLLED_BACK: [],
    S.ABORTED: [],
    S.FAILED: ["retry"],
    S.CANCELLED: [],
}


@pytest.mark.parametrize("state", list(State))
def test_actions_allowed(state):
    assert machine.actions_allowed(state) == ACTIONS[state]
    assert machine.actions_allowed(state.value) == ACTIONS[state]


def test_refused_names_the_state_in_words():
    for state, event in itertools.product(State, Event):
        if machine.allowed(state, event):
            continue
        with pytest.raises(Refused) as refused:
            transition(state, event)
        text = str(refused.value)
        words = state.value.replace("_", " ")
        assert text.startswith(f"a deployment that is {words} cannot "), text
        assert state.value not in text or "_" not in state.value


@pytest.mark.parametrize(("state", "event", "text"), [
    (S.PENDING, E.CANCEL, "a deployment that is pending cannot be cancelled (only a scheduled one can)"),
    (S.ANALYZING, E.RESUME, "a deployment that is analyzing cannot be resumed (only a paused one can)"),
    (S.PAUSED, E.APPROVE, "a deployment that is paused cannot be approved (only one awaiting approval can)"),
    (S.AWAITING_APPROVAL, E.RETRY, "a deployment that is awaiting approval cannot be retried"),
    (S.ROLLBACK_FAILED, E.ABORT, "a deployment that is rollback failed cannot be aborted"),
    (S.RETIRED, E.ROLLBACK, "a deployment that is retired cannot be rolled back"),
    (S.VERIFYING, E.PROMOTE, "a deployment that is verifying cannot be promoted (only while green takes traffic)"),
])
def test_refused_says_why_for_person_actions(state, event, text):
    with pytest.raises(Refused, match=r"^" + text.replace("(", r"\(").replace(")", r"\)")):
        transition(state, event)


def test_strings_are_read_as_states_and_events_and_unknown_ones_raise():
    assert transition("scheduled", "due") == S.PENDING
    assert machine.allowed("paused", "resume") is True
    with pytest.raises(ValueError):
        transition("sleeping", "ok")
    with pytest.raises(ValueError):
        transition("pending", "jump")


# Events that leave the happy path; the walk takes them less often so that it gets deep.
_DETOURS = {E.ROLLBACK, E.ABORT, E.DEADLINE, E.ERROR, E.BREACH, E.PROMOTE, E.CANCEL}


def test_a_random_walk_takes_only_allowed_events_and_stays_in_known_states():
    rng = random.Random(20260601)
    events = list(Event)
    state, cause, verified = S.PENDING, None, False
    visited, taken, refused = {state}, set(), 0
    for _ in range(40_000):
        allowed_here = list(EXPECTED[state])
        forward = [e for e in allowed_here if e not in _DETOURS]
        roll = rng.random()
        if forward and roll < 0.5:
            event = rng.choice(forward)
        elif allowed_here and roll < 0.8:
            event = rng.choice(allowed_here)
        else:
            event = rng.choice(events)
        want = _expected(state, event, cause or Cause.BREACH)
        if want is None:
            with pytest.raises(Refused):
                transition(state, event, cause=cause)
            refused += 1
            continue
        new = transition(state, event, cause=cause)
        assert new == want and new in State
        taken.add((state, event))
        # Invariants a walk must never break.
        if new == S.ROLLING_BACK and state != S.ROLLBACK_FAILED:
            cause = machine.cause_of(event)
            assert cause is not None
        if (state, event) == (S.ROLLING_BACK, E.OK):
            assert new == END_OF[cause]
        if new == S.PENDING:
            cause, verified = None, False
        if (state, event) == (S.VERIFYING, E.OK):
            verified = True
        if new in {S.SHIFTING, S.BAKING, S.ANALYZING, S.PAUSED, S.AWAITING_APPROVAL, S.PROMOTING, S.SUCCEEDED}:
            assert verified, f"green took traffic in {new} without a warm-up"
        if new == S.SUCCEEDED:
            assert state == S.PROMOTING
        state = new
        visited.add(state)
        if state in FINISHED and rng.random() < 0.5 or not EXPECTED[state]:
            state, cause, verified = rng.choice([S.SCHEDULED, S.PENDING]), None, False
            visited.add(state)
    assert visited == set(State)
    assert taken == {(s, e) for s in EXPECTED for e in EXPECTED[s]}
    assert refused > 1000
