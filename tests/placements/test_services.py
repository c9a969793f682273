"""placement_create, apply, retry and remove: validation, permissions, quota, audit and idempotency.

Servers here have nothing behind them (connection refused), which is a real failure mode of
Triton I/O; the tests that need a live Triton are in test_on_triton.py.
"""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.common.errors import Conflict
from controlplane.fleet.models import Pool, Server, ServerStatus
from controlplane.placements import services
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.quotas.models import Reservation
from controlplane.quotas.selectors import team_devices_held
from controlplane.quotas.services import QuotaExceeded, quota_set
from controlplane.registry.models import VersionStatus
from controlplane.serving.render import render_model_config
from tests.placements.conftest import CLOSED, events, make_config, make_model, make_version, states


def create(actor, model, versions=(1,), servers=(), **extra):
    return services.placement_create(actor=actor, model=model, versions=list(versions), servers=list(servers), **extra)


def nothing_written():
    return (Placement.objects.count(), PlacementTarget.objects.count(), Reservation.objects.count(),
            AuditEvent.objects.filter(object_type__startswith="placements.").count()) == (0, 0, 0, 0)


# -- create: validation -----------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    ([], "at least one version"),
    (["1"], "integers"),
    ([True], "integers"),
    ([1, 1], "listed twice"),
    ([7], "v7 of fraud-scorer is not a registered, ready version"),
    ([1, 7, 9], "v7, v9 of fraud-scorer are not"),
])
def test_versions_are_checked_and_the_error_names_the_field(as_deployer, model, versions, offline_servers, bad, message):
    with pytest.raises(ValidationError) as caught:
        create(as_deployer, model, bad, offline_servers)
    assert list(caught.value.message_dict) == ["versions"]
    assert message in caught.value.message_dict["versions"][0]
    assert nothing_written()


def test_a_registering_version_or_another_models_version_is_refused(as_deployer, model, team, offline_servers):
    make_version(model, 3, status=VersionStatus.REGISTERING)
    make_version(make_model(team, "other"), 4)
    for number in (3, 4):
        with pytest.raises(ValidationError) as caught:
            create(as_deployer, model, [number], offline_servers)
        assert f"v{number} of fraud-scorer is not a registered, ready version" in caught.value.message_dict["versions"][0]
    assert nothing_written()


def test_servers_are_checked(as_deployer, model, versions, offline_servers):
    from controlplane.fleet.models import Server

    cases = [
        ([], "Choose at least one server"),
        ([offline_servers[0], offline_servers[0]], "triton-0 is listed twice"),
        ([offline_servers[0], Server(name="ghost")], "No server named ghost"),
    ]
    for servers, message in cases:
        with pytest.raises(ValidationError) as caught:
            create(as_deployer, model, [1], servers)
        assert list(caught.value.message_dict) == ["servers"] and message in caught.value.message_dict["servers"][0]
    Server.objects.filter(pk=offline_servers[1].pk).update(status=ServerStatus.DOWN, last_error="connection refused")
    with pytest.raises(ValidationError) as caught:
        create(as_deployer, model, [1], offline_servers)
    assert "triton-1 (connection refused)" in caught.value.message_dict["servers"][0]
    assert nothing_written()


def test_a_config_of_another_model_is_refused(as_deployer, model, team, versions, offline_servers):
    foreign = make_config(make_model(team, "other"), 1, {"max_batch_size": 4})
    with pytest.raises(ValidationError) as caught:
        create(as_deployer, model, [1], offline_servers, config=foreign)
    assert "belongs to another model" in caught.value.message_dict["config"][0]
    assert nothing_written()


def test_viewers_may_not_place_and_outsiders_do_not_see_the_model(viewer, outsider, model, versions, offline_servers):
    with pytest.raises(PermissionDenied):
        create(Actor(user=viewer, source="api"), model, [1], offline_servers)
    with pytest.raises(Http404):
        create(Actor(user=outsider, source="api"), model, [1], offline_servers)
    assert nothing_written()


# -- create: what is written --------------------------------------------------------------------

def test_create_pins_the_current_config_renders_it_and_audits(as_deployer, deployer, model, versions, offline_servers):
    make_config(model, 1, {"max_batch_size": 4})
    current = make_config(model, 2, {"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 500}})
    placement, created = create(as_deployer, model, [2, 1], offline_servers)
    assert created and placement.versions == [1, 2] and placement.config == current
    assert placement.rendered_config == render_model_config(model, current, versions=[1, 2])
    assert placement.rendered_config["version_policy"] == {"specific": {"versions": [1, 2]}}
    assert states(placement) == {"triton-0": "pending", "triton-1": "pending"}
    (event,) = events("placement.create")
    assert (event.actor_user_id, event.source, event.team_id) == (deployer.pk, "api", model.team_id)
    assert event.after == {"versions": [1, 2], "config_revision": 2, "servers": ["triton-0", "triton-1"],
                           "gpus": {"triton-0": 0, "triton-1": 0}, "devices": {"triton-0": [], "triton-1": []},
                           "replaced_placements": []}


def test_the_same_request_twice_is_one_placement(as_deployer, model, versions, offline_servers):
    first, created = create(as_deployer, model, [1], offline_servers)
    again, created_again = create(as_deployer, model, [1], list(reversed(offline_servers)))
    assert (created, created_again) == (True, False) and again.pk == first.pk
    assert Placement.objects.count() == 1 and PlacementTarget.objects.count() == 2
    assert len(events("placement.create")) == 1


def test_create_queues_the_apply_after_commit(as_deployer, model, versions, offline_servers, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        create(as_deployer, model, [1], offline_servers)
    assert len(callbacks) == 1
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        create(as_deployer, model, [1], offline_servers)  # the same again: nothing new to apply
    assert callbacks == []


def test_a_new_placement_on_a_server_replaces_the_old_target(as_deployer, model, versions, offline_servers):
    a, b = offline_servers
    old, _ = create(as_deployer, model, [1], [a, b])
    new, _ = create(as_deployer, model, [2], [b])
    old_targets = {t.server_name: t for t in old.targets.all()}
    new_target = new.targets.get()
    assert old_targets["triton-1"].state == TargetState.REMOVED and old_targets["triton-1"].replaced_by_id == new_target.pk
    assert old_targets["triton-0"].state == TargetState.PENDING
    assert new_target.state == TargetState.PENDING
    old.refresh_from_db()
    assert old.removed_at is None  # it still has triton-0
    (replace,) = events("placement.target.replace")
    assert replace.object_id == str(old_targets["triton-1"].pk) and replace.reason == f"replaced by placement {new.pk}"

    newest, _ = create(as_deployer, model, [2], [a])
    old.refresh_from_db()
    assert old.removed_at is not None  # nothing of it is left
    assert events("placement.remove")[-1].reason == f"replaced by placement {newest.pk}"
    # one active target per (model, server), whatever happened
    assert PlacementTarget.objects.exclude(state="removed").count() == 2


def test_a_ready_target_with_the_same_config_moves_without_a_reload(as_deployer, model, versions, offline_servers):
    a, b = offline_servers
    old, _ = create(as_deployer, model, [1], [a])
    PlacementTarget.objects.filter(placement=old).update(state=TargetState.READY, load_seconds=1.5)
    new, created = create(as_deployer, model, [1], [a, b])
    assert created
    assert states(new) == {"triton-0": "ready", "triton-1": "pending"}
    assert new.targets.get(server_name="triton-0").load_seconds == 1.5


def test_a_database_constraint_keeps_one_active_target_per_model_and_server(as_deployer, model, versions, offline_servers):
    from django.db import IntegrityError, transaction

    placement, _ = create(as_deployer, model, [1], offline_servers[:1])
    target = placement.targets.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        PlacementTarget.objects.create(placement=placement, model=model, server=target.server, server_name="x",
                                       state_changed_at=target.state_changed_at)


# -- quota ----------------------------------------------------------------------------------------

@pytest.fixture
def gpu_config(model):
    """2 instances on GPUs 0 and 1 of each server."""
    return make_config(model, 1, {"instance_group": [{"kind": "KIND_GPU", "count": 2, "gpus": [0, 1]}]})


def held(team) -> int:
    return len(team_devices_held(team))


def test_quota_refusal_writes_nothing_and_names_the_numbers(as_deployer, as_admin, team, model, versions, gpu_servers, gpu_config):
    quota_set(actor=as_admin, team=team, gpus=3)
    before = AuditEvent.objects.count()
    with pytest.raises(QuotaExceeded) as caught:
        create(as_deployer, model, [1], gpu_servers)
    assert caught.value.status_code == 409 and caught.value.field == "gpus"
    assert caught.value.message == "team vision would hold 4 of 3 GPUs: fraud-scorer v1 on 2 servers needs 4 new on top of 0 held"
    assert nothing_written() and AuditEvent.objects.count() == before


def test_the_refusal_counts_what_the_team_holds_elsewhere_once(as_deployer, as_admin, team, model, versions, gpu_servers,
                                                               gpu_config):
    other = make_model(team, "resnet")
    make_version(other, 1)
    make_config(other, 1, {"instance_group": [{"kind": "KIND_GPU", "gpus": [1, 2]}]})
    quota_set(actor=as_admin, team=team, gpus=4)
    create(as_deployer, other, [1], gpu_servers[:1])  # GPUs 1-2 of gpu-0
    with pytest.raises(QuotaExceeded) as caught:
        create(as_deployer, model, [1], gpu_servers)  # GPUs 0-1 of both: 1 of gpu-0 is held already
    assert caught.value.message == "team vision would hold 5 of 4 GPUs: fraud-scorer v1 on 2 servers needs 3 new on top of 2 held"


def test_devices_are_reserved_per_server_whatever_the_number_of_versions(as_deployer, as_admin, team, model, versions,
                                                                         gpu_servers, gpu_config):
    quota_set(actor=as_admin, team=team, gpus=4)
    placement, _ = create(as_deployer, model, [1, 2], gpu_servers)  # 2 versions side by side, on GPUs 0-1 of each
    targets = list(placement.targets.select_related("reservation"))
    assert [(t.gpus, t.reservation.gpus, t.reservation.devices, t.reservation.server_id) for t in targets] == [
        (2, 2, [0, 1], gpu_servers[0].pk), (2, 2, [0, 1], gpu_servers[1].pk)]
    assert {t.reservation.holder for t in targets} == {f"placement {placement.pk}"}
    assert len(events("quota.reserve")) == 2
    assert events("placement.create")[0].after["devices"] == {"gpu-0": [0, 1], "gpu-1": [0, 1]}
    assert held(team) == 4


def test_a_same_servers_second_version_costs_no_extra_device(as_deployer, as_admin, team, model, versions, gpu_servers,
                                                             gpu_config):
    """Green beside blue on the same servers (version_policy specific [1, 2]) fits in blue's quota."""
    quota_set(actor=as_admin, team=team, gpus=4)
    blue, _ = create(as_deployer, model, [1], gpu_servers)
    both, created = create(as_deployer, model, [1, 2], gpu_servers)
    assert created and both.rendered_config["version_policy"] == {"specific": {"versions": [1, 2]}}
    assert held(team) == 4 and [t.gpus for t in both.targets.all()] == [2, 2]
    assert Reservation.objects.filter(released_at__isnull=True).count() == 2  # blue's were released as it was replaced


def test_kind_gpu_without_gpus_takes_every_gpu_of_its_server(as_deployer, as_admin, team, model, versions):
    """Triton spreads KIND_GPU without gpus over every GPU of the server: 4 on a 4-GPU server."""
    four = Server.objects.create(name="gpu-4x", pool=Pool.objects.create(name="a10"), http_url=CLOSED, gpu_count=4)
    make_config(model, 1, {"instance_group": [{"kind": "KIND_GPU", "count": 1}]})
    quota_set(actor=as_admin, team=team, gpus=3)
    with pytest.raises(QuotaExceeded, match="would hold 4 of 3 GPUs: fraud-scorer v1 on 1 server needs 4 new on top of 0 held"):
        create(as_deployer, model, [1], [four])
    quota_set(actor=as_admin, team=team, gpus=4)
    placement, _ = create(as_deployer, model, [1], [four])
    target = placement.targets.select_related("reservation").get()
    assert (target.gpus, target.reservation.devices) == (4, [0, 1, 2, 3])


def test_listed_gpus_take_exactly_those(as_deployer, as_admin, team, model, versions, gpu_servers):
    make_config(model, 1, {"instance_group": [{"kind": "KIND_GPU", "count": 3, "gpus": [0, 2]}, {"kind": "KIND_CPU"}]})
    quota_set(actor=as_admin, team=team, gpus=2)
    placement, _ = create(as_deployer, model, [1], gpu_servers[:1])
    target = placement.targets.select_related("reservation").get()
    assert (target.gpus, target.reservation.devices) == (2, [0, 2])


def test_a_gpu_index_the_server_lacks_is_refused_naming_the_field(as_deployer, as_admin, team, model, versions, gpu_servers):
    four = Server.objects.create(name="gpu-4x", pool=Pool.objects.create(name="a10"), http_url=CLOSED, gpu_count=4)
    make_config(model, 1, {"instance_group": [{"kind": "KIND_GPU", "gpus": [0, 6]}]})
    quota_set(actor=as_admin, team=team, gpus=64)
    with pytest.raises(ValidationError) as caught:
        create(as_deployer, model, [1], [gpu_servers[0], four])
    assert caught.value.message_dict == {"instance_group[0].gpus": ["gpu-4x has no GPU 6: it has 4 GPUs, indexes 0 to 3."]}
    assert nothing_written()


def test_two_models_of_the_team_on_the_same_device_count_once(as_deployer, as_admin, team, model, versions, gpu_servers):
    other = make_model(team, "resnet")
    make_version(other, 1)
    for m in (model, other):
        make_config(m, 1, {"instance_group": [{"kind": "KIND_GPU", "gpus": [3]}]})
    quota_set(actor=as_admin, team=team, gpus=1)
    create(as_deployer, model, [1], gpu_servers[:1])
    create(as_deployer, other, [1], gpu_servers[:1])
    assert held(team) == 1 and Reservation.objects.filter(released_at__isnull=True).count() == 2


def test_cpu_only_servers_take_no_gpus_for_auto_instances(as_deployer, team, offline_servers, gpu_servers):
    onnx = make_model(team, "resnet")
    onnx.backend = "onnxruntime"
    onnx.save()
    make_version(onnx, 1)
    with pytest.raises(QuotaExceeded):  # KIND_AUTO counts as a GPU where there are GPUs; quota is 0
        create(Actor.system("worker"), onnx, [1], [gpu_servers[0]])
    placement, _ = create(Actor.system("worker"), onnx, [1], offline_servers)
    assert [t.gpus for t in placement.targets.all()] == [0, 0] and Reservation.objects.count() == 0


def test_replacing_a_target_releases_its_gpus_before_reserving(as_deployer, as_admin, team, model, versions, gpu_servers, gpu_config):
    quota_set(actor=as_admin, team=team, gpus=2)
    old, _ = create(as_deployer, model, [1], gpu_servers[:1])
    moved = make_config(model, 2, {"instance_group": [{"kind": "KIND_GPU", "gpus": [2, 3]}]})
    new, _ = create(as_deployer, model, [2], gpu_servers[:1], config=moved)  # would need 4 if GPUs 0-1 were still held
    old_target = old.targets.select_related("reservation").get()
    assert old_target.reservation.released_at is not None
    assert new.targets.select_related("reservation").get().reservation.devices == [2, 3]
    assert new.targets.get().reservation.released_at is None


def test_every_replaced_target_is_released_before_any_reservation(as_deployer, as_admin, team, model, versions, gpu_servers):
    """Whatever the order of the servers: the old target on gpu-1 frees its 8 GPUs before gpu-0's
    new one is reserved, so moving from 8 GPUs of gpu-1 to GPU 0 of each server fits a quota of 8."""
    every = make_config(model, 1, {"instance_group": [{"kind": "KIND_GPU"}]})
    one = make_config(model, 2, {"instance_group": [{"kind": "KIND_GPU", "gpus": [0]}]})
    quota_set(actor=as_admin, team=team, gpus=8)
    create(as_deployer, model, [1], gpu_servers[1:], config=every)
    assert held(team) == 8
    placement, created = create(as_deployer, model, [2], gpu_servers, config=one)
    assert created and held(team) == 2 and [t.gpus for t in placement.targets.all()] == [1, 1]


# -- apply, retry, remove (servers refuse connections) ----------------------------------------------

def test_apply_records_each_failure_with_its_reason_and_is_safe_to_run_twice(as_deployer, model, versions, offline_servers):
    placement, _ = create(as_deployer, model, [1], offline_servers)
    assert services.placement_apply(placement_id=placement.pk) == {"failed": 2}
    for target in placement.targets.all():
        assert target.state == TargetState.FAILED
        assert "load fraud-scorer" not in target.error and "Connection refused" in target.error, target.error
    failed = events("placement.target.failed")
    assert len(failed) == 2 and {e.source for e in failed} == {"worker"}
    assert failed[0].before == {"state": "loading"} and "Connection refused" in failed[0].after["error"]
    assert len(events("placement.target.load")) == 2

    assert services.placement_apply(placement_id=placement.pk) == {}  # failed stays failed until a retry
    assert len(events("placement.target.load")) == 2


def test_a_late_answer_for_a_replaced_target_is_dropped(as_deployer, model, versions, offline_servers):
    placement, _ = create(as_deployer, model, [1], offline_servers[:1])
    target = services._targets(placement=placement).get()
    claim = services._claim(target, to=TargetState.LOADING, actor=Actor.system("worker"), action="placement.target.load")
    assert claim is not None
    assert services._claim(target, to=TargetState.LOADING, actor=Actor.system("worker"), action="x") is None  # taken
    create(as_deployer, model, [2], offline_servers[:1])  # replaces it while the load is "in flight"
    outcome = services.Outcome(TargetState.READY, 1.0)
    assert services._record_load(claim, outcome, Actor.system("worker")) is None
    target.refresh_from_db()
    assert target.state == TargetState.REMOVED and events("placement.target.ready") == []


def test_retry_sends_failed_targets_back_and_is_idempotent(as_deployer, deployer, model, versions, offline_servers):
    placement, _ = create(as_deployer, model, [1], offline_servers)
    services.placement_apply(placement_id=placement.pk)
    moved = services.placement_retry(actor=as_deployer, placement=placement)
    assert sorted(t.server_name for t in moved) == ["triton-0", "triton-1"]
    assert states(placement) == {"triton-0": "pending", "triton-1": "pending"}
    retry = events("placement.target.retry")
    assert len(retry) == 2 and retry[0].actor_user_id == deployer.pk and retry[0].before["state"] == "failed"
    assert services.placement_retry(actor=as_deployer, placement=placement) == []
    assert len(events("placement.target.retry")) == 2


def test_retry_needs_a_deployer_and_an_active_placement(as_deployer, viewer, model, versions, offline_servers):
    placement, _ = create(as_deployer, model, [1], offline_servers)
    with pytest.raises(PermissionDenied):
        services.placement_retry(actor=Actor(user=viewer, source="ui"), placement=placement)
    services.placement_remove(actor=as_deployer, placement=placement)
    with pytest.raises(Conflict):
        services.placement_retry(actor=as_deployer, placement=placement)


def test_remove_unloads_then_releases_and_is_idempotent(as_deployer, as_admin, team, model, versions, gpu_servers, gpu_config):
    quota_set(actor=as_admin, team=team, gpus=4)
    placement, _ = create(as_deployer, model, [1], gpu_servers)
    removed = services.placement_remove(actor=as_deployer, placement=placement)
    assert removed.removed_at is not None
    assert states(placement) == {"gpu-0": "unloading", "gpu-1": "unloading"}
    assert Reservation.objects.filter(released_at__isnull=True).count() == 2  # held until each server confirms
    services.placement_remove(actor=as_deployer, placement=placement)
    assert len(events("placement.remove")) == 1 and len(events("placement.target.unload")) == 2

    # Unreachable servers: in explicit mode a restarted Triton has nothing loaded, so release.
    assert services.placement_unload(placement_id=placement.pk) == {"removed": 2}
    assert states(placement) == {"gpu-0": "removed", "gpu-1": "removed"}
    assert Reservation.objects.filter(released_at__isnull=True).count() == 0
    done = events("placement.target.removed")
    assert len(done) == 2 and "Server unreachable" in done[0].after["note"] and done[0].source == "worker"
    assert services.placement_unload(placement_id=placement.pk) == {}


def test_apply_of_a_missing_or_removed_placement_does_nothing(as_deployer, model, versions, offline_servers):
    from workers.placements import apply_placement, unload_placement

    assert apply_placement(987654) is None and unload_placement(987654) is None
    placement, _ = create(as_deployer, model, [1], offline_servers)
    services.placement_remove(actor=as_deployer, placement=placement)
    assert apply_placement(placement.pk) == {}
    assert events("placement.target.load") == []


def test_reconciler_reports_unreachable_servers_and_leaves_failed_targets_alone(as_deployer, model, versions, offline_servers):
    placement, _ = create(as_deployer, model, [1], offline_servers)
    services.placement_apply(placement_id=placement.pk)
    report = services.reconcile_fleet()
    assert sorted(u["server"] for u in report["unreachable"]) == ["triton-0", "triton-1"]
    assert report["reapplied"] == []
    target = placement.targets.first()
    assert (target.state, target.drift) == ("failed", "unreachable")
    drift_events = events("placement.target.drift")
    assert len(drift_events) == 2 and {e.source for e in drift_events} == {"system"}
    services.reconcile_fleet()
    assert len(events("placement.target.drift")) == 2  # only changes are audited


def test_reconciler_retires_targets_whose_server_was_deregistered(as_deployer, model, versions, offline_servers):
    placement, _ = create(as_deployer, model, [1], offline_servers[:1])
    # Gone without a drain (the fleet service refuses that; a database restore or the admin does not).
    offline_servers[0].delete()
    services.reconcile_fleet()
    target = placement.targets.get()
    assert (target.state, target.server_id, target.server_name) == ("removed", None, "triton-0")
    placement.refresh_from_db()
    assert placement.removed_at is not None
    assert events("placement.target.removed")[0].reason == "server deregistered"


def test_a_gpu_config_does_not_fit_cpu_only_servers(model, versions, offline_servers, gpu_servers, as_deployer, as_admin):
    from django.core.exceptions import ValidationError

    from controlplane.placements.models import Placement
    from controlplane.placements.services import placement_create
    from controlplane.quotas.services import quota_set
    from tests.placements.conftest import make_config

    config = make_config(model, 1, {"instance_group": [{"kind": "KIND_GPU", "count": 1}]})
    with pytest.raises(ValidationError) as refused:
        placement_create(actor=as_deployer, model=model, versions=[1], servers=offline_servers, config=config)
    assert "servers" in refused.value.message_dict and "CPU-only" in refused.value.message_dict["servers"][0]
    assert not Placement.objects.exists()
    quota_set(actor=as_admin, team=model.team, gpus=8)
    placement, created = placement_create(actor=as_deployer, model=model, versions=[1], servers=gpu_servers[:1], config=config)
    assert created and placement.targets.get().gpus == 8  # KIND_GPU without gpus: every GPU of the server
