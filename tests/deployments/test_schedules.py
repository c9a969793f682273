"""Schedules and deadlines: `services.deployments_tick()` (the beat task) starts a scheduled
deployment once its start time has passed, never a cancelled one; the worker rolls back a
deployment whose deadline passed. Time is moved by rewriting start_at and deadline_at into the
past, never by sleeping."""
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.common.errors import Conflict
from controlplane.deployments import services
from controlplane.deployments.services import engine
from controlplane.deployments.machine import Event, State
from controlplane.deployments.models import Deployment
from controlplane.deployments.services.transitions import apply_event
from tests.deployments.conftest import URL, body, counts, create, drive, events, step, url


def later(**delta) -> str:
    return (timezone.now() + timedelta(**(delta or {"hours": 1}))).isoformat()


def pass_start(d: Deployment, seconds: float = 1) -> None:
    """The start time came: move it into the past, as the clock would."""
    Deployment.objects.filter(pk=d.pk).update(start_at=timezone.now() - timedelta(seconds=seconds))


def test_a_future_start_time_makes_it_scheduled(api, deployer, label_endpoint):
    start = timezone.now() + timedelta(hours=2)
    response = api(deployer).post(URL, body(start_at=start.isoformat(), deadline_s=3600), format="json")
    assert response.status_code == 201, response.json()
    d = Deployment.objects.get(pk=response.json()["id"])
    d.refresh_from_db()
    assert d.state == State.SCHEDULED and response.json()["actions"] == ["cancel"]
    assert abs((d.start_at - start).total_seconds()) < 0.001 and d.next_run_at == d.start_at
    assert d.deadline_at == d.start_at + timedelta(seconds=3600)  # the deadline counts from the start
    assert d.started_at is None
    [event] = events("deployment.create")
    assert event.after["state"] == "scheduled" and event.after["start_at"] == d.start_at.isoformat()


def test_the_tick_leaves_it_until_its_start_time(as_deployer, label_endpoint):
    d = create(as_deployer, start_at=later(minutes=5))
    before = counts()
    assert d.pk not in engine.deployments_tick()
    d.refresh_from_db()
    assert d.state == State.SCHEDULED and counts() == before


def test_once_its_start_time_passed_the_tick_makes_it_pending_as_the_schedule(as_deployer, label_endpoint):
    d = create(as_deployer, start_at=later())
    pass_start(d)
    engine.deployments_tick()
    d.refresh_from_db()
    assert d.state == State.PENDING
    last = d.transitions.order_by("-id").first()
    assert (last.from_state, last.to_state, last.event, last.source) == ("scheduled", "pending", "due", "schedule")
    [due] = events("deployment.due")
    assert (due.source, due.actor_user_id, due.object_id) == ("schedule", None, str(d.pk))
    assert due.before == {"state": "scheduled"} and due.after["state"] == "pending"
    assert d.pk in engine.deployments_tick()  # pending and due: handed to a worker
    assert len(events("deployment.due")) == 1  # a second tick does not start it twice


def test_a_cancelled_deployment_never_starts(api, deployer, as_deployer, label_endpoint):
    d = create(as_deployer, start_at=later(minutes=1))
    response = api(deployer).post(url(d, "cancel"), {"reason": "change freeze"}, format="json")
    assert response.status_code == 200
    d.refresh_from_db()
    assert d.state == State.CANCELLED and d.finished_at is not None
    pass_start(d, seconds=120)
    before = counts()
    assert d.pk not in engine.deployments_tick()
    d.refresh_from_db()
    assert d.state == State.CANCELLED and counts() == before
    assert not events("deployment.due")
    assert events("deployment.cancel")[0].reason == "change freeze"


def test_a_cancelled_deployment_frees_the_endpoint(api, deployer, as_deployer, label_endpoint):
    d = create(as_deployer, start_at=later())
    with pytest.raises(Conflict):
        create(as_deployer, version=3)  # a scheduled deployment holds the endpoint
    services.deployment_act(actor=as_deployer, deployment=d, action="cancel", reason="")
    assert create(as_deployer, version=3).state == State.PENDING


@pytest.mark.parametrize("start", [
    lambda: (timezone.now() - timedelta(seconds=5)).isoformat(),
    lambda: (timezone.now() - timedelta(days=400)).isoformat(),
    lambda: (timezone.now() - timedelta(hours=1)).astimezone(timezone.get_fixed_timezone(-300)).isoformat(),
])
def test_a_start_time_in_the_past_is_refused(api, deployer, label_endpoint, start):
    before = counts()
    response = api(deployer).post(URL, body(start_at=start()), format="json")
    assert response.status_code == 400, response.json()
    assert "start_at" in response.json()["fields"]
    assert counts() == before


def test_a_start_time_with_another_zone_is_the_same_instant(as_deployer, label_endpoint):
    start = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    d = create(as_deployer, start_at=start.astimezone(timezone.get_fixed_timezone(330)).isoformat())
    assert d.start_at == start


def test_the_tick_starts_only_the_due_ones(as_deployer, team, model, label_endpoint, pinned_endpoint):
    due = create(as_deployer, start_at=later())
    waiting = create(as_deployer, endpoint="vision.fraud", start_at=later(days=1))
    pass_start(due)
    engine.deployments_tick()
    due.refresh_from_db()
    waiting.refresh_from_db()
    assert (due.state, waiting.state) == (State.PENDING, State.SCHEDULED)


# -- deadlines ------------------------------------------------------------------------------------


def pass_deadline(d: Deployment) -> None:
    Deployment.objects.filter(pk=d.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.parametrize("state", [State.BAKING, State.PAUSED, State.AWAITING_APPROVAL])
def test_the_worker_rolls_back_a_deployment_past_its_deadline(as_deployer, model, label_endpoint, state):
    d = drive(create(as_deployer, deadline_s=600), state)
    pass_deadline(d)
    assert d.pk in engine.deployments_tick()  # the tick hands it to a worker
    engine.deployment_advance(d.pk)
    d.refresh_from_db()
    assert d.cause == "deadline"
    assert d.state in (State.ROLLING_BACK, State.ROLLED_BACK)
    assert d.state == State.ROLLED_BACK  # no gateway replica to wait for, green never loaded
    deadline = d.transitions.get(event="deadline")
    assert (deadline.from_state, deadline.to_state, deadline.source) == (state, "rolling_back", "worker")
    assert "deadline" in deadline.reason
    [audit] = events("deployment.deadline")
    assert audit.source == "worker" and audit.after["cause"] == "deadline" and audit.after["traffic_percent"] == 0
    assert d.traffic_percent == 0


def test_before_its_deadline_a_waiting_deployment_is_left_alone(as_deployer, label_endpoint):
    d = drive(create(as_deployer, deadline_s=600), State.PAUSED)
    before = AuditEvent.objects.count()
    assert engine.deployment_advance(d.pk) == State.PAUSED
    d.refresh_from_db()
    assert d.state == State.PAUSED and AuditEvent.objects.count() == before


def test_a_deadline_does_not_touch_a_succeeded_deployment(as_deployer, model, label_endpoint):
    d = drive(create(as_deployer, deadline_s=600, rollback_window_s=600), State.SUCCEEDED)
    pass_deadline(d)
    assert engine.deployment_advance(d.pk) == State.SUCCEEDED
    d.refresh_from_db()
    assert d.state == State.SUCCEEDED and not d.transitions.filter(event="deadline").exists()


def test_a_scheduled_deployment_is_not_rolled_back_before_it_starts(as_deployer, label_endpoint):
    d = create(as_deployer, start_at=later(), deadline_s=600)
    pass_deadline(d)
    engine.deployments_tick()
    d.refresh_from_db()
    assert d.state == State.SCHEDULED and not events("deployment.deadline")


def test_a_person_and_the_deadline_racing_move_it_once(as_deployer, label_endpoint):
    d = drive(create(as_deployer, deadline_s=600), State.BAKING)
    stale = Deployment.objects.get(pk=d.pk)
    services.deployment_act(actor=as_deployer, deployment=d, action="abort", reason="stop")
    assert apply_event(stale, Event.DEADLINE, actor=Actor.system("worker")) is None  # lost the compare-and-set
    d.refresh_from_db()
    assert (d.state, d.cause) == (State.ROLLING_BACK, "abort")
    assert d.transitions.filter(to_state="rolling_back").count() == 1
    step(d, Event.OK)
    d.refresh_from_db()
    assert d.state == State.ABORTED
