"""quota_set, quota_reserve and quota_release: limits in distinct devices, permissions and audit events."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models.deletion import ProtectedError
from django.http import Http404

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.fleet.models import Server
from controlplane.fleet.services import server_remove
from controlplane.quotas.models import GpuQuota, Reservation, ReservationKind
from controlplane.quotas.selectors import quota_usage
from controlplane.quotas.services import QuotaExceeded, quota_release, quota_reserve, quota_set
from controlplane.registry.models import VersionStatus
from tests.quotas.conftest import make_model, make_version

PLACEMENT, DEPLOYMENT = ReservationKind.PLACEMENT, ReservationKind.DEPLOYMENT


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.fixture
def reserve(as_deployer, team, version, server):
    """reserve([0, 1]) holds GPUs 0 and 1 of gpu-1 (8 GPUs) for fraud-scorer v3."""
    def make(devices, **extra):
        args = {"actor": as_deployer, "team": team, "devices": list(devices), "kind": PLACEMENT, "version": version,
                "server": server}
        return quota_reserve(**(args | extra))

    return make


@pytest.fixture
def gpu2(server):
    """A second server of 8 GPUs, in gpu-1's pool."""
    return Server.objects.create(name="gpu-2", pool=server.pool, http_url="http://127.0.0.1:9", gpu_type="A100", gpu_count=8)


# quota_set ----------------------------------------------------------------------------------

def test_a_team_without_a_quota_row_has_0_gpus(team, reserve):
    assert not GpuQuota.objects.filter(team=team).exists()
    assert quota_usage(team).limit == 0
    with pytest.raises(QuotaExceeded) as caught:
        reserve([0])
    assert caught.value.message == "team vision would hold 1 of 0 GPUs: fraud-scorer v3 on gpu-1 needs 1 new on top of 0 held"
    assert not GpuQuota.objects.filter(team=team).exists()  # the refusal rolled back the lazy row too
    assert Reservation.objects.count() == 0


def test_platform_admin_sets_the_quota_and_it_is_audited_with_before_and_after(as_admin, team, platform_admin):
    quota = quota_set(actor=as_admin, team=team, gpus=8, reason="Q3 budget")
    assert GpuQuota.objects.get(team=team).gpus == 8 == quota.gpus
    quota_set(actor=as_admin, team=team, gpus=12, reason="more")
    first, second = events("quota.set")
    assert (first.before, first.after, first.reason) == ({"gpus": 0}, {"gpus": 8}, "Q3 budget")
    assert (second.before, second.after, second.reason) == ({"gpus": 8}, {"gpus": 12}, "more")
    assert second.team_id == team.pk and second.actor_user_id == platform_admin.pk and second.actor_name == "pat"
    assert second.object_type == "quotas.gpuquota" and second.object_id == str(quota.pk)


def test_setting_the_same_quota_again_changes_nothing_and_writes_no_event(as_admin, team):
    quota_set(actor=as_admin, team=team, gpus=8)
    quota_set(actor=as_admin, team=team, gpus=8)
    assert len(events("quota.set")) == 1


def test_a_worker_may_set_quotas(team):
    quota_set(actor=Actor.system("worker"), team=team, gpus=3)
    assert GpuQuota.objects.get(team=team).gpus == 3
    assert events("quota.set")[0].actor_name == "worker"


@pytest.mark.parametrize("who", ["deployer", "viewer", "outsider"])
def test_only_platform_admins_set_quotas(request, team, who):
    team_admin = request.getfixturevalue(who)
    with pytest.raises(PermissionDenied):
        quota_set(actor=Actor(user=team_admin, source="api"), team=team, gpus=100)
    assert not GpuQuota.objects.filter(team=team).exists()
    assert events("quota.set") == []


def test_a_team_admin_is_not_a_platform_admin(team, django_user_model):
    from controlplane.accounts.models import Membership, Role

    boss = django_user_model.objects.create_user("ada", password="x")
    Membership.objects.create(user=boss, team=team, role=Role.ADMIN)
    with pytest.raises(PermissionDenied):
        quota_set(actor=Actor(user=boss, source="ui"), team=team, gpus=100)


@pytest.mark.parametrize("gpus", [-1, 1.5, "8", True, None, 100_001])
def test_bad_quota_values_are_refused_on_the_gpus_field(as_admin, team, gpus):
    with pytest.raises(ValidationError) as caught:
        quota_set(actor=as_admin, team=team, gpus=gpus)
    assert list(caught.value.message_dict) == ["gpus"]
    assert events("quota.set") == []


def test_0_is_a_valid_quota(as_admin, team):
    quota_set(actor=as_admin, team=team, gpus=5)
    quota_set(actor=as_admin, team=team, gpus=0)
    assert GpuQuota.objects.get(team=team).gpus == 0


# quota_reserve ------------------------------------------------------------------------------

def test_exactly_at_the_limit_passes_and_one_over_fails_with_the_numbers(as_admin, team, reserve, gpu2):
    quota_set(actor=as_admin, team=team, gpus=8)
    reserve(range(4))
    last = reserve(range(4, 8))
    assert quota_usage(team).held == 8
    with pytest.raises(QuotaExceeded) as caught:
        reserve(range(4), server=gpu2)
    assert caught.value.message == "team vision would hold 12 of 8 GPUs: fraud-scorer v3 on gpu-2 needs 4 new on top of 8 held"
    assert (caught.value.status_code, caught.value.field) == (409, "gpus")
    assert (caught.value.limit, caught.value.held, caught.value.needed) == (8, 8, 4)
    quota_release(actor=Actor.system("worker"), reservation=last)
    with pytest.raises(QuotaExceeded, match="would hold 9 of 8 GPUs: fraud-scorer v3 on gpu-2 needs 5 new on top of 4 held"):
        reserve(range(5), server=gpu2)
    reserve(range(4), server=gpu2)
    assert quota_usage(team).held == 8


def test_only_new_devices_count_and_the_message_says_how_many(as_admin, team, reserve):
    quota_set(actor=as_admin, team=team, gpus=4)
    reserve([0, 1, 2])
    with pytest.raises(QuotaExceeded) as caught:
        reserve([1, 2, 3, 4])  # 1 and 2 are held already: 2 new
    assert caught.value.message == "team vision would hold 5 of 4 GPUs: fraud-scorer v3 on gpu-1 needs 2 new on top of 3 held"
    assert (caught.value.held, caught.value.needed) == (3, 2)
    reserve([2, 3])
    assert quota_usage(team).held == 4


def test_the_message_names_the_deployment_and_a_single_gpu(as_admin, team, reserve):
    quota_set(actor=as_admin, team=team, gpus=1)
    reserve([0])
    with pytest.raises(QuotaExceeded) as caught:
        reserve([1, 2], kind=DEPLOYMENT, holder="deployment 42")
    assert caught.value.message == (
        "team vision would hold 3 of 1 GPU: fraud-scorer v3 for deployment 42 on gpu-1 needs 2 new on top of 1 held"
    )


def test_a_reservation_is_audited_in_full(as_admin, team, reserve, version, server, deployer):
    quota_set(actor=as_admin, team=team, gpus=8)
    reserve([5, 0, 1], holder="placement 7", description="load on gpu-1")
    reservation = Reservation.objects.get()
    assert (reservation.gpus, reservation.devices, reservation.kind, reservation.version, reservation.server) == (
        3, [0, 1, 5], PLACEMENT, version, server)
    assert (reservation.server_name, reservation.holder, reservation.released_at) == ("gpu-1", "placement 7", None)
    (event,) = events("quota.reserve")
    assert event.team_id == team.pk and event.actor_user_id == deployer.pk
    assert event.object_type == "quotas.reservation" and event.object_id == str(reservation.pk)
    assert event.object_repr == "3 GPUs (0-1, 5) for fraud-scorer v3 for placement 7 on gpu-1"
    assert event.before is None
    assert event.after == {
        "gpus": 3, "devices": [0, 1, 5], "kind": "placement", "version": version.pk, "server": server.pk,
        "server_name": "gpu-1", "holder": "placement 7", "description": "load on gpu-1", "team_held": 3, "team_quota": 8,
    }


def test_team_held_in_the_audit_counts_devices_once(as_admin, team, reserve):
    quota_set(actor=as_admin, team=team, gpus=8)
    reserve([0, 1])
    reserve([1, 2])
    assert [e.after["team_held"] for e in events("quota.reserve")] == [2, 3]


def test_a_refusal_writes_nothing(as_admin, team, reserve):
    quota_set(actor=as_admin, team=team, gpus=2)
    before = AuditEvent.objects.count()
    with pytest.raises(QuotaExceeded):
        reserve([0, 1, 2])
    assert AuditEvent.objects.count() == before
    assert Reservation.objects.count() == 0


def test_a_same_servers_second_version_costs_no_device(as_admin, team, model, reserve):
    """Green loaded beside blue on the same GPUs (version_policy specific [blue, green]) is free."""
    blue, green = make_version(model, 1), make_version(model, 2)
    quota_set(actor=as_admin, team=team, gpus=4)
    reserve(range(4), version=blue)
    reserve(range(4), version=green, holder="placement 2")
    usage = quota_usage(team)
    assert (usage.held, usage.free) == (4, 0)
    with pytest.raises(QuotaExceeded, match="needs 1 new on top of 4 held"):
        reserve([4], version=green)


def test_two_models_on_the_same_device_count_once(as_admin, team, reserve, server):
    resnet = make_version(make_model(team, "resnet50"), 1)
    quota_set(actor=as_admin, team=team, gpus=1)
    reserve([3])
    reserve([3], version=resnet)
    usage = quota_usage(team)
    assert usage.held == 1
    assert [(m.model, m.gpus) for m in usage.by_model] == [("fraud-scorer", 1), ("resnet50", 1)]


def test_the_deployment_surge_counts_on_top_of_blue_and_overlaps_greens_placement(as_admin, team, model, as_deployer,
                                                                                  reserve, gpu2):
    """A new-servers blue-green: the surge is reserved at planning, then green's own placement on
    the same devices holds nothing more; blue's retirement leaves green's devices."""
    blue, green = make_version(model, 1), make_version(model, 2)
    quota_set(actor=as_admin, team=team, gpus=8)
    blue_reservation = reserve(range(4), version=blue)
    surge = reserve(range(4), version=green, kind=DEPLOYMENT, server=gpu2, holder="deployment 42")
    green_placement = reserve(range(4), version=green, server=gpu2, holder="placement 9")
    assert quota_usage(team).held == 8
    with pytest.raises(QuotaExceeded, match="would hold 9 of 8 GPUs"):
        reserve([4], version=green, server=gpu2)
    quota_release(actor=as_deployer, reservation=blue_reservation, reason="blue retired")
    quota_release(actor=as_deployer, reservation=surge, reason="blue retired")
    assert quota_usage(team).held == 4 and Reservation.objects.get(pk=green_placement.pk).is_active


def test_a_reservation_adding_no_device_passes_over_a_lowered_quota(as_admin, team, model, reserve):
    quota_set(actor=as_admin, team=team, gpus=8)
    reserve(range(6))
    quota_set(actor=as_admin, team=team, gpus=4, reason="budget cut")
    reserve([0, 1], version=make_version(model, 4))  # changes nothing the quota counts
    with pytest.raises(QuotaExceeded, match="would hold 7 of 4 GPUs: fraud-scorer v3 on gpu-1 needs 1 new on top of 6 held"):
        reserve([5, 6])
    assert quota_usage(team).held == 6


def test_viewers_cannot_reserve(as_admin, team, viewer, version, server):
    quota_set(actor=as_admin, team=team, gpus=8)
    with pytest.raises(PermissionDenied):
        quota_reserve(actor=Actor(user=viewer, source="api"), team=team, kind=PLACEMENT, version=version, server=server,
                      devices=[0])
    assert Reservation.objects.count() == 0 and events("quota.reserve") == []


def test_outsiders_are_told_the_team_does_not_exist(as_admin, team, outsider, version, server):
    quota_set(actor=as_admin, team=team, gpus=8)
    with pytest.raises(Http404):
        quota_reserve(actor=Actor(user=outsider, source="api"), team=team, kind=PLACEMENT, version=version, server=server,
                      devices=[0])
    assert Reservation.objects.count() == 0


def test_platform_admins_and_workers_may_reserve(as_admin, team, version, server):
    quota_set(actor=as_admin, team=team, gpus=8)
    quota_reserve(actor=as_admin, team=team, kind=PLACEMENT, version=version, server=server, devices=[0])
    quota_reserve(actor=Actor.system("worker"), team=team, kind=PLACEMENT, version=version, server=server, devices=[1])
    assert quota_usage(team).held == 2


def test_an_anonymous_api_actor_may_not_reserve(as_admin, team, version, server):
    quota_set(actor=as_admin, team=team, gpus=8)
    with pytest.raises(PermissionDenied):
        quota_reserve(actor=Actor(user=None, source="api"), team=team, kind=PLACEMENT, version=version, server=server,
                      devices=[0])


def test_a_version_of_another_team_is_refused(as_admin, team, other_team, reserve):
    quota_set(actor=as_admin, team=team, gpus=8)
    foreign = make_version(make_model(other_team, "whisper"), 1)
    with pytest.raises(ValidationError) as caught:
        reserve([0], version=foreign)
    assert caught.value.message_dict == {"version": ["whisper v1 does not belong to team vision."]}


@pytest.mark.parametrize(
    "change,field",
    [
        ({"devices": []}, "devices"),
        ({"devices": None}, "devices"),
        ({"devices": 2}, "devices"),
        ({"devices": "0"}, "devices"),
        ({"devices": [-1]}, "devices"),
        ({"devices": [True]}, "devices"),
        ({"devices": ["0"]}, "devices"),
        ({"devices": [1.0]}, "devices"),
        ({"devices": [0, 0]}, "devices"),
        ({"devices": [7, 8]}, "devices"),  # gpu-1 has 8 GPUs, 0 to 7
        ({"kind": "surge"}, "kind"),
        ({"version": None}, "version"),
        ({"server": None}, "server"),  # a placement and a surge alike are on a server
        ({"server": None, "kind": DEPLOYMENT, "holder": "deployment 1"}, "server"),
        ({"kind": DEPLOYMENT, "holder": ""}, "holder"),
        ({"holder": "x" * 101}, "holder"),
        ({"description": "x" * 501}, "description"),
    ],
)
def test_bad_reservations_are_refused_naming_the_field(as_admin, team, version, server, as_deployer, change, field):
    quota_set(actor=as_admin, team=team, gpus=8)
    args = {"actor": as_deployer, "team": team, "devices": [0, 1], "kind": PLACEMENT, "version": version, "server": server}
    with pytest.raises(ValidationError) as caught:
        quota_reserve(**(args | change))
    assert list(caught.value.message_dict) == [field]
    assert Reservation.objects.count() == 0


def test_a_gpu_the_server_lacks_is_refused_saying_what_it_has(as_admin, team, reserve, server):
    quota_set(actor=as_admin, team=team, gpus=8)
    with pytest.raises(ValidationError) as caught:
        reserve([1, 8, 9])
    assert caught.value.message_dict == {"devices": ["gpu-1 has 8 GPUs, so no GPU 8, 9."]}
    cpu = Server.objects.create(name="cpu-1", pool=server.pool, http_url="http://127.0.0.1:9")
    with pytest.raises(ValidationError) as caught:
        reserve([0], server=cpu)
    assert caught.value.message_dict == {"devices": ["cpu-1 has no GPUs, so no GPU 0."]}


def test_devices_may_come_as_any_collection_and_are_stored_sorted(as_admin, team, version, server, as_deployer):
    quota_set(actor=as_admin, team=team, gpus=8)
    for devices, stored in [({3, 1}, [1, 3]), ((7, 5), [5, 7]), (frozenset({2}), [2])]:
        reservation = quota_reserve(actor=as_deployer, team=team, kind=PLACEMENT, version=version, server=server,
                                    devices=devices)
        assert Reservation.objects.get(pk=reservation.pk).devices == stored


def test_a_version_still_registering_is_refused(as_admin, team, model, reserve):
    quota_set(actor=as_admin, team=team, gpus=8)
    with pytest.raises(ValidationError, match="still registering"):
        reserve([0], version=make_version(model, 9, status=VersionStatus.REGISTERING))


def test_lowering_the_quota_below_what_is_held_evicts_nothing_but_refuses_more(as_admin, team, reserve):
    quota_set(actor=as_admin, team=team, gpus=8)
    reserve(range(6))
    quota_set(actor=as_admin, team=team, gpus=4, reason="budget cut")
    usage = quota_usage(team)
    assert (usage.limit, usage.held, usage.free, usage.over) == (4, 6, 0, 2)
    with pytest.raises(QuotaExceeded, match="would hold 7 of 4 GPUs: fraud-scorer v3 on gpu-1 needs 1 new on top of 6 held"):
        reserve([7])


def test_quotas_are_per_team(as_admin, team, other_team, outsider, reserve, server):
    """Each team counts its own devices, even on the same GPU."""
    quota_set(actor=as_admin, team=team, gpus=2)
    quota_set(actor=as_admin, team=other_team, gpus=2)
    whisper = make_version(make_model(other_team, "whisper"), 1)
    quota_reserve(actor=Actor(user=outsider, source="api"), team=other_team, kind=DEPLOYMENT, version=whisper,
                  server=server, devices=[0, 1], holder="deployment 1")
    reserve([0, 1])
    assert quota_usage(team).held == 2 and quota_usage(other_team).held == 2


# quota_release ------------------------------------------------------------------------------

def test_release_frees_the_gpus_and_releasing_twice_is_a_no_op(as_admin, team, reserve, as_deployer):
    quota_set(actor=as_admin, team=team, gpus=4)
    reservation = reserve(range(4))
    released = quota_release(actor=as_deployer, reservation=reservation, reason="unloaded")
    assert released.released_at is not None
    first_time = released.released_at
    again = quota_release(actor=as_deployer, reservation=Reservation.objects.get(pk=reservation.pk))
    assert again.released_at == first_time
    stale = quota_release(actor=as_deployer, reservation=reservation)  # a stale copy is a no-op too
    assert stale.released_at == first_time
    (event,) = events("quota.release")
    assert (event.before, event.reason, event.object_id) == ({"released_at": None}, "unloaded", str(reservation.pk))
    assert event.after["released_at"] is not None
    assert quota_usage(team).held == 0
    reserve(range(4))  # the GPUs are free again


def test_viewers_and_outsiders_cannot_release(as_admin, team, reserve, viewer, outsider):
    quota_set(actor=as_admin, team=team, gpus=4)
    reservation = reserve(range(4))
    with pytest.raises(PermissionDenied):
        quota_release(actor=Actor(user=viewer, source="api"), reservation=reservation)
    with pytest.raises(Http404):
        quota_release(actor=Actor(user=outsider, source="api"), reservation=reservation)
    assert Reservation.objects.get(pk=reservation.pk).is_active and events("quota.release") == []


# history ------------------------------------------------------------------------------------

def test_removing_a_server_keeps_the_reservation_but_its_devices_are_gone(as_admin, team, reserve, server):
    quota_set(actor=as_admin, team=team, gpus=4)
    reservation = reserve([0, 1])
    server_remove(actor=as_admin, server=server)
    reservation.refresh_from_db()
    assert (reservation.server, reservation.server_name, reservation.is_active) == (None, "gpu-1", True)
    assert (reservation.gpus, reservation.devices) == (2, [0, 1])  # history
    assert quota_usage(team).held == 0  # those GPUs no longer exist, so they count for nothing


def test_a_reserved_version_cannot_be_deleted(as_admin, team, reserve, version):
    quota_set(actor=as_admin, team=team, gpus=4)
    quota_release(actor=as_admin, reservation=reserve([0, 1]))
    with pytest.raises(ProtectedError):
        version.delete()
