"""Deployment services on the database: one holder per endpoint (the constraint itself, and the
409s it gives), GPU devices against the quota with the surge of a new-servers green, the plan,
and the routing table while a rollout holds an endpoint. No Triton, no worker process: the
worker's transitions are made with `services.apply_event`, and the engine is called directly."""
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.common.errors import Conflict
from controlplane.deployments import services
from controlplane.deployments.services import engine
from controlplane.deployments.machine import ACTIVE, TERMINAL, Event, State
from controlplane.deployments.models import HOLDING, Deployment
from controlplane.endpoints.routing import build_table
from controlplane.endpoints.services import endpoint_create
from controlplane.fleet.models import Pool, Server, ServerStatus
from controlplane.placements.models import PlacementTarget, TargetState
from controlplane.placements.services import placement_create
from controlplane.quotas.models import Reservation, ReservationKind
from controlplane.quotas.services import QuotaExceeded, quota_set
from controlplane.registry.models import VersionLabel
from controlplane.serving.models import ServingConfig
from tests.deployments.conftest import (
    URL,
    body,
    counts,
    create,
    drive,
    events,
    place_ready,
    step,
    surge_of,
)


def label_of(model, name="stable") -> int:
    return VersionLabel.objects.select_related("version").get(model=model, name=name).version.version


def clone(d: Deployment, state: str) -> Deployment:
    """A second deployment row of the same endpoint, inserted directly (no service)."""
    return Deployment.objects.create(
        team=d.team, endpoint=d.endpoint, model=d.model, blue_version=d.blue_version, green_version=d.green_version,
        strategy=d.strategy, steps=d.steps, placement_mode=d.placement_mode, gates=d.gates, state=state,
        state_changed_at=timezone.now(),
    )


# -- one holder per endpoint: the database's own constraint ------------------------------------------


def test_holding_states_are_the_active_ones_but_succeeded():
    assert set(HOLDING) == {s.value for s in ACTIVE} - {State.SUCCEEDED.value}
    assert not set(HOLDING) & {s.value for s in TERMINAL}


@pytest.mark.parametrize("state", HOLDING)
def test_the_database_refuses_a_second_holding_row(as_deployer, label_endpoint, state):
    d = create(as_deployer)
    with pytest.raises(IntegrityError, match="deployment_one_active_per_endpoint"), transaction.atomic():
        clone(d, state)
    assert Deployment.objects.count() == 1


@pytest.mark.parametrize("state", sorted({State.SUCCEEDED.value} | {s.value for s in TERMINAL}))
def test_a_succeeded_or_finished_row_holds_nothing(as_deployer, label_endpoint, state):
    d = create(as_deployer)
    clone(d, state)
    clone(d, state)
    assert Deployment.objects.count() == 3


def test_the_database_refuses_an_unknown_state_and_traffic_over_100(as_deployer, label_endpoint):
    d = create(as_deployer)
    with pytest.raises(IntegrityError), transaction.atomic():
        clone(d, "exploding")
    with pytest.raises(IntegrityError), transaction.atomic():
        Deployment.objects.filter(pk=d.pk).update(traffic_percent=101)


def test_a_second_create_is_a_409_naming_the_holder_and_its_state(as_deployer, label_endpoint):
    first = drive(create(as_deployer), State.BAKING)
    before = counts()
    with pytest.raises(Conflict) as refused:
        create(as_deployer, version=3)
    assert refused.value.status_code == 409 and refused.value.field == "endpoint"
    assert f"deployment {first.pk} (baking)" in refused.value.message
    assert counts() == before


def test_two_creates_at_once_give_one_deployment_and_a_409_naming_it(transactional_db, as_deployer, label_endpoint):
    """Both pass every check before either writes; the database's constraint decides, and the
    loser gets the same 409 as a later caller (never a 500)."""
    import threading

    from django.db import connection

    start, results = threading.Barrier(2), []

    def one(version):
        try:
            start.wait(5)
            results.append(create(as_deployer, version=version))
        except Conflict as exc:
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(v,)) for v in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    [made] = [r for r in results if isinstance(r, Deployment)]
    [refused] = [r for r in results if isinstance(r, Conflict)]
    assert refused.status_code == 409 and refused.field == "endpoint"
    assert f"deployment {made.pk} (" in refused.message
    assert Deployment.objects.count() == 1


def test_a_retry_is_refused_while_another_deployment_holds_the_endpoint(as_deployer, label_endpoint):
    first = drive(create(as_deployer), State.FAILED)
    second = create(as_deployer, version=3)
    before = counts()
    with pytest.raises(Conflict) as refused:
        services.deployment_act(actor=as_deployer, deployment=first, action="retry", reason="again")
    assert refused.value.status_code == 409
    assert f"deployment {second.pk}" in refused.value.message
    first.refresh_from_db()
    assert first.state == State.FAILED and counts() == before


def test_a_fast_rollback_is_refused_once_the_next_deployment_holds_the_endpoint(as_deployer, model, label_endpoint, servers):
    first = drive(create(as_deployer), State.SUCCEEDED)
    place_ready(model, [2], servers[1:2])
    second = create(as_deployer, version=3)
    before = counts()
    with pytest.raises(Conflict) as refused:
        services.deployment_act(actor=as_deployer, deployment=first, action="rollback", reason="undo")
    assert f"deployment {second.pk}" in refused.value.message
    first.refresh_from_db()
    assert first.state == State.SUCCEEDED and label_of(model) == 2 and counts() == before


def test_an_unknown_action_is_a_400(as_deployer, label_endpoint):
    d = create(as_deployer)
    with pytest.raises(ValidationError) as refused:
        services.deployment_act(actor=as_deployer, deployment=d, action="explode")
    assert "action" in refused.value.message_dict


# -- new servers (CPU): the servers checked -----------------------------------------------------------


def test_new_servers_on_cpu_servers_reserve_nothing(as_deployer, label_endpoint, servers):
    d = create(as_deployer, placement="new_servers", servers=["cpu-2", "cpu-3"])
    d.refresh_from_db()
    assert d.servers == [{"id": servers[1].pk, "name": "cpu-2"}, {"id": servers[2].pk, "name": "cpu-3"}]
    assert d.plan["green_versions"] == [2] and d.plan["surge"] == 0
    assert not surge_of(d).exists()


@pytest.mark.parametrize("names, make, text", [
    (["cpu-9"], None, "No server named cpu-9"),
    (["cpu-1"], None, "already placed on cpu-1"),
    (["cpu-2"], "drain", "cpu-2 is draining"),
    (["cpu-2"], "down", "cpu-2 is down"),
])
def test_new_servers_must_exist_be_up_and_not_hold_the_model(as_deployer, label_endpoint, servers, names, make, text):
    if make == "drain":
        Server.objects.filter(name="cpu-2").update(draining_since=timezone.now())
    if make == "down":
        Server.objects.filter(name="cpu-2").update(status=ServerStatus.DOWN, last_error="connection refused")
    before = counts()
    with pytest.raises(ValidationError) as refused:
        create(as_deployer, placement="new_servers", servers=names)
    assert text in " ".join(refused.value.message_dict["servers"])
    assert counts() == before


# -- GPU devices and the quota -----------------------------------------------------------------------


@pytest.fixture
def gpu_servers(db):
    pool = Pool.objects.create(name="gpu-a100")
    return [Server.objects.create(name=f"gpu-{i}", pool=pool, http_url="http://127.0.0.1:9", gpu_type="A100", gpu_count=2)
            for i in (1, 2, 3)]


@pytest.fixture
def gpu_blue(team, model, versions, labels, gpu_servers, as_admin, as_deployer):
    """Blue v1 on gpu-1 with a KIND_GPU instance group (no `gpus`: every GPU of the server, 2
    devices), placed by the placement service (so its devices are reserved) and then READY.
    The team's quota is 4; vision.gpu follows `stable`."""
    ServingConfig.objects.create(model=model, revision=1, spec={"instance_group": [{"kind": "KIND_GPU", "count": 1}]})
    quota_set(actor=as_admin, team=team, gpus=4)
    placement, _ = placement_create(actor=as_deployer, model=model, versions=[1], servers=gpu_servers[:1])
    placement.targets.update(state=TargetState.READY, loaded_at=timezone.now(), state_changed_at=timezone.now())
    endpoint_create(actor=Actor.system(), team=team, model=model, name="gpu", kind="label", label="stable")
    assert Reservation.objects.get(released_at__isnull=True).devices == [0, 1]
    return placement


def new_servers(*names, **extra) -> dict:
    return {"endpoint": "vision.gpu", "placement": "new_servers", "servers": list(names), **extra}


def test_a_surge_over_the_quota_is_a_409_with_the_numbers_and_writes_nothing(as_deployer, as_admin, team, gpu_blue):
    quota_set(actor=as_admin, team=team, gpus=3)
    before = counts()
    with pytest.raises(QuotaExceeded) as refused:
        create(as_deployer, **new_servers("gpu-2"))
    assert refused.value.status_code == 409 and refused.value.field == "gpus"
    assert (refused.value.held, refused.value.needed, refused.value.limit) == (2, 2, 3)
    assert refused.value.message == ("team vision would hold 4 of 3 GPUs: deployment of fraud-scorer v2 on new servers "
                                     "(the surge) needs 2 new on top of 2 held")
    assert counts() == before


def test_the_api_answers_the_quota_refusal_with_409(api, deployer, as_admin, team, gpu_blue):
    quota_set(actor=as_admin, team=team, gpus=3)
    before = counts()
    response = api(deployer).post(URL, body(**new_servers("gpu-2")), format="json")
    assert response.status_code == 409, response.json()
    text = " ".join(response.json()["fields"]["gpus"])
    assert "4 of 3 GPUs" in text and "needs 2 new on top of 2 held" in text
    assert counts() == before


def test_within_the_quota_the_surge_is_reserved_for_the_deployment(as_deployer, gpu_blue, gpu_servers):
    d = create(as_deployer, **new_servers("gpu-2"))
    d.refresh_from_db()
    [surge] = surge_of(d)
    assert (surge.kind, surge.holder, surge.server_id, surge.devices, surge.gpus, surge.version.version) == (
        ReservationKind.DEPLOYMENT, f"deployment {d.pk}", gpu_servers[1].pk, [0, 1], 2, 2)
    assert surge.released_at is None
    assert (d.plan["quota"], d.plan["held_now"], d.plan["peak"], d.plan["surge"], d.plan["over_quota"]) == (4, 2, 4, 2, False)
    assert d.plan["released_at_retire"] == 2
    [reserve] = events("quota.reserve", object_id=str(surge.pk))
    assert reserve.after["holder"] == f"deployment {d.pk}"
    assert Reservation.objects.filter(released_at__isnull=True).count() == 2  # blue's and the surge


def test_a_surge_on_two_servers_reserves_each(as_deployer, as_admin, team, gpu_blue, gpu_servers):
    quota_set(actor=as_admin, team=team, gpus=6)
    d = create(as_deployer, **new_servers("gpu-2", "gpu-3"))
    assert sorted((r.server_id, tuple(r.devices)) for r in surge_of(d)) == [(gpu_servers[1].pk, (0, 1)), (gpu_servers[2].pk, (0, 1))]
    assert d.plan["surge"] == 4 and d.plan["peak"] == 6


def test_cancelling_a_scheduled_deployment_releases_its_surge(as_deployer, gpu_blue):
    d = create(as_deployer, **new_servers("gpu-2", start_at=(timezone.now() + timedelta(hours=1)).isoformat()))
    assert d.state == State.SCHEDULED and surge_of(d).get().released_at is None
    services.deployment_act(actor=as_deployer, deployment=d, action="cancel", reason="not tonight")
    d.refresh_from_db()
    assert d.state == State.CANCELLED
    assert surge_of(d).get().released_at is not None
    [release] = events("quota.release")
    assert release.reason == "scheduled deployment cancelled" and release.actor_name == "dana"


def test_a_rolled_back_deployment_releases_its_surge(as_deployer, gpu_blue):
    d = drive(create(as_deployer, **new_servers("gpu-2")), State.SHIFTING)
    services.deployment_act(actor=as_deployer, deployment=d, action="rollback", reason="bad")
    d.refresh_from_db()
    assert d.state == State.ROLLING_BACK and surge_of(d).get().released_at is None  # the worker releases it
    assert engine.deployment_advance(d.pk) == State.ROLLED_BACK
    d.refresh_from_db()
    assert (d.state, d.cause) == (State.ROLLED_BACK, "rollback")
    assert surge_of(d).get().released_at is not None
    assert [e.reason for e in events("quota.release")] == ["deployment rolled back"]


def _failed_and_released(as_deployer) -> Deployment:
    """A new-servers deployment whose validation hit an error: the worker rolled it back (releasing
    its surge) and it ended failed."""
    d = step(step(create(as_deployer, **new_servers("gpu-2")), Event.BEGIN), Event.ERROR)
    assert engine.deployment_advance(d.pk) == State.FAILED
    assert not surge_of(d).filter(released_at__isnull=True).exists()
    return Deployment.objects.get(pk=d.pk)


def test_a_retried_new_servers_deployment_holds_its_surge_again(as_deployer, gpu_blue):
    d = _failed_and_released(as_deployer)
    services.deployment_act(actor=as_deployer, deployment=d, action="retry", reason="again")
    d.refresh_from_db()
    assert d.state == State.PENDING
    assert surge_of(d).filter(released_at__isnull=True).count() == 1  # green's new devices are counted again


def test_a_retry_whose_surge_no_longer_fits_the_quota_is_a_409(as_deployer, as_admin, team, gpu_blue):
    d = _failed_and_released(as_deployer)
    quota_set(actor=as_admin, team=team, gpus=3)
    before = counts()
    with pytest.raises(QuotaExceeded):
        services.deployment_act(actor=as_deployer, deployment=d, action="retry", reason="again")
    d.refresh_from_db()
    assert d.state == State.FAILED and counts() == before


def test_release_surge_is_idempotent(as_deployer, gpu_blue):
    d = create(as_deployer, **new_servers("gpu-2"))
    assert services.release_surge(as_deployer, d, "done") == 1
    assert services.release_surge(as_deployer, d, "done") == 0
    assert len(events("quota.release")) == 1


def test_the_freed_quota_takes_the_next_surge(as_deployer, gpu_blue):
    d = create(as_deployer, **new_servers("gpu-2"))
    Deployment.objects.filter(pk=d.pk).update(state=State.ABORTED)  # held devices stay until released
    with pytest.raises(QuotaExceeded):
        create(as_deployer, **new_servers("gpu-3"))
    services.release_surge(as_deployer, d, "aborted")
    assert surge_of(create(as_deployer, **new_servers("gpu-3"))).count() == 1


def test_plan_shows_the_surge_over_the_quota_and_writes_nothing(api, deployer, as_admin, team, gpu_blue):
    quota_set(actor=as_admin, team=team, gpus=3)
    before = counts()
    response = api(deployer).post(URL + "plan/", body(**new_servers("gpu-2")), format="json")
    assert response.status_code == 200, response.json()
    plan = response.json()["plan"]
    assert (plan["quota"], plan["held_now"], plan["peak"], plan["surge"], plan["over_quota"]) == (3, 2, 4, 2, True)
    assert {p["name"]: p["devices_held"] for p in plan["phases"]} == {
        "provisioning": 4, "step 1": 4, "promoting": 4, "rollback window": 4, "retired": 2}
    assert plan["projected_s"] > 0
    assert counts() == before


def test_a_same_servers_plan_on_cpu_servers_has_no_surge(as_deployer, label_endpoint):
    r = services.deployment_plan(actor=as_deployer, data=body())
    assert (r.plan.surge, r.plan.peak, r.plan.held_now, r.plan.over_quota) == (0, 0, 0, False)
    assert [s.name for s in r.servers] == ["cpu-1"] and r.green_versions == [1, 2]


@pytest.mark.parametrize("prometheus", ["", "http://127.0.0.1:9"], ids=["not-configured", "not-answering"])
def test_same_servers_on_gpu_servers_needs_gpu_memory_known(api, deployer, as_deployer, settings, gpu_blue, prometheus):
    settings.SWITCHYARD_PROMETHEUS_URL = prometheus
    before = counts()
    with pytest.raises(ValidationError) as refused:
        create(as_deployer, endpoint="vision.gpu")
    text = " ".join(refused.value.message_dict["placement"])
    assert "gpu-1" in text and "GPU memory unknown" in text
    response = api(deployer).post(URL, body(endpoint="vision.gpu"), format="json")
    assert response.status_code == 400 and "GPU memory unknown" in " ".join(response.json()["fields"]["placement"])
    assert counts() == before


# -- the routing table while a rollout holds the endpoint ---------------------------------------------


def table_variants(name: str) -> list[dict]:
    endpoint = next(e for e in build_table()["endpoints"] if e["name"] == name)
    return [{k: v[k] for k in ("name", "version", "weight", "guard", "servers")} for v in endpoint["variants"]]


GUARD = {"max_error_ratio": 0.02, "min_requests": 10, "window_s": 10}


def test_preparing_states_leave_the_endpoint_as_it_was(as_deployer, label_endpoint, servers):
    unchanged = table_variants("vision.scorer")
    assert unchanged == [{"name": "stable", "version": 1, "weight": 100, "guard": None, "servers": [servers[0].pk]}]
    d = create(as_deployer, gates={"max_error_ratio": 0.02})
    assert table_variants("vision.scorer") == unchanged
    for event in (Event.BEGIN, Event.OK, Event.OK):  # validating, provisioning, verifying
        d = step(d, event)
        assert table_variants("vision.scorer") == unchanged, d.state


@pytest.mark.parametrize("state", [State.SHIFTING, State.BAKING, State.ANALYZING, State.PAUSED, State.AWAITING_APPROVAL])
def test_a_traffic_state_lists_green_with_its_guard_then_blue(as_deployer, label_endpoint, servers, state):
    drive(create(as_deployer, gates={"max_error_ratio": 0.02}, canary_percent=10), state)
    assert table_variants("vision.scorer") == [
        {"name": "green", "version": 2, "weight": 10, "guard": GUARD, "servers": []},  # green not loaded by anyone here
        {"name": "blue", "version": 1, "weight": 90, "guard": None, "servers": [servers[0].pk]},
    ]


def test_promoting_sends_everything_to_green_and_succeeded_follows_the_moved_label(as_deployer, model, label_endpoint, servers):
    d = drive(create(as_deployer, gates={"max_error_ratio": 0.02}), State.PROMOTING)
    assert [(v["name"], v["version"], v["weight"], v["guard"]) for v in table_variants("vision.scorer")] == [
        ("green", 2, 100, GUARD), ("blue", 1, 0, None)]
    place_ready(model, [2], servers[1:2])
    step(d, Event.OK)
    assert table_variants("vision.scorer") == [
        {"name": "stable", "version": 2, "weight": 100, "guard": None, "servers": [servers[1].pk]}]


def test_rolling_back_gives_green_no_weight_and_no_guard(as_deployer, label_endpoint, servers):
    d = drive(create(as_deployer, gates={"max_error_ratio": 0.02}), State.ANALYZING)
    services.deployment_act(actor=as_deployer, deployment=d, action="rollback", reason="bad")
    assert table_variants("vision.scorer") == [
        {"name": "green", "version": 2, "weight": 0, "guard": None, "servers": []},
        {"name": "blue", "version": 1, "weight": 100, "guard": None, "servers": [servers[0].pk]},
    ]
    step(Deployment.objects.get(pk=d.pk), Event.OK)
    assert [v["name"] for v in table_variants("vision.scorer")] == ["stable"]


@pytest.mark.parametrize("gates, guard", [
    ({"max_error_ratio": 0.1, "guard": False}, None),
    ({"max_error_ratio": None, "max_p99_ms": 250}, None),
    ({"max_error_ratio": 0.1, "min_requests": 5}, {"max_error_ratio": 0.1, "min_requests": 5, "window_s": 10}),
    ({}, {"max_error_ratio": 0.05, "min_requests": 10, "window_s": 10}),
])
def test_green_guard_follows_the_error_ratio_gate(as_deployer, label_endpoint, gates, guard):
    drive(create(as_deployer, gates=gates), State.BAKING)
    assert table_variants("vision.scorer")[0]["guard"] == guard


def test_a_pinned_endpoint_in_a_rollout_lists_green_and_blue(as_deployer, pinned_endpoint, servers):
    drive(create(as_deployer, endpoint="vision.fraud", strategy="linear", step_percent=30), State.SHIFTING)
    assert [(v["name"], v["version"], v["weight"]) for v in table_variants("vision.fraud")] == [
        ("green", 2, 30), ("blue", 1, 70)]


def test_only_the_rolled_out_endpoint_changes(as_deployer, team, model, label_endpoint, pinned_endpoint):
    untouched = table_variants("vision.fraud")
    drive(create(as_deployer), State.SHIFTING)
    assert table_variants("vision.fraud") == untouched


# -- transactions and the worker -------------------------------------------------------------------


def test_a_transition_writes_its_history_row_and_audit_event_together(as_deployer, label_endpoint, monkeypatch):
    from controlplane.deployments.services import transitions

    d = create(as_deployer)

    def broken(**kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(transitions, "audit_record", broken)
    before = counts()
    with pytest.raises(RuntimeError):
        services.deployment_act(actor=as_deployer, deployment=d, action="abort", reason="x")
    d.refresh_from_db()
    assert d.state == State.PENDING and counts() == before


def test_a_deployment_with_no_targets_left_for_blue_fails_validation(as_deployer, label_endpoint, blue):
    d = step(create(as_deployer), Event.BEGIN)
    PlacementTarget.objects.filter(placement=blue).update(state=TargetState.UNLOADING)
    assert engine.deployment_advance(d.pk) == State.FAILED
    d.refresh_from_db()
    assert d.cause == "error"
    assert "READY on no server" in d.transitions.get(event="error").reason
