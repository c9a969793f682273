"""Removing servers and pools: a server holding active placements is refused unless drained; a
drain unloads its targets in the worker, then removes it. The API and the services agree."""
import pytest
from django.core.exceptions import PermissionDenied

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.common.errors import Conflict
from controlplane.fleet import services
from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.placements.services import placement_create
from tests.quotas.conftest import make_version
from workers.fleet import drain_server, probe_fleet


def target_states():
    return sorted(PlacementTarget.objects.values_list("server_name", "state"))


def test_an_empty_server_is_removed_at_once_and_audited(as_admin, server):
    assert services.server_remove(actor=as_admin, server=server) is None
    assert not Server.objects.exists()
    event = AuditEvent.objects.get(action="server.remove")
    assert event.before["name"] == "triton-1" and event.actor_name == "pat"


def test_a_server_with_active_placements_is_refused_naming_them(as_admin, server, placed):
    with pytest.raises(Conflict) as caught:
        services.server_remove(actor=as_admin, server=server)
    assert caught.value.field == "drain"
    assert f"vision/fraud-scorer (placement {placed.pk})" in caught.value.message
    assert Server.objects.filter(pk=server.pk, draining_since=None).exists()
    assert not AuditEvent.objects.filter(action__in=["server.remove", "server.drain"]).exists()
    assert target_states() == [("triton-1", "pending")]


def test_drain_unloads_in_the_worker_then_removes(as_admin, server, other_server, placed, django_capture_on_commit_callbacks):
    # A second placement of the same model spans both servers: it must survive on triton-2.
    model = placed.model
    make_version(model, 2)
    wide, _ = placement_create(actor=as_admin, model=model, versions=[2], servers=[server, other_server])
    assert target_states() == [("triton-1", "pending"), ("triton-1", "removed"), ("triton-2", "pending")]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        draining = services.server_remove(actor=as_admin, server=server, drain=True)
    assert draining is not None and draining.draining_since is not None
    assert len(callbacks) == 1  # the drain task, queued after commit: the request waits on no Triton
    assert Server.objects.filter(pk=server.pk).exists()
    assert target_states() == [("triton-1", "removed"), ("triton-1", "unloading"), ("triton-2", "pending")]
    drain_event = AuditEvent.objects.get(action="server.drain")
    assert drain_event.after["placements"] == [wide.pk]
    unload = AuditEvent.objects.get(action="placement.target.unload")
    assert unload.team.slug == "vision" and unload.reason == "server triton-1 is draining"

    # Asking again changes nothing new; the API says so too.
    services.server_remove(actor=as_admin, server=server, drain=True)
    assert AuditEvent.objects.filter(action="server.drain").count() == 1

    # The worker: the server refuses connections, so the unload is released; then the server goes.
    assert drain_server(server.pk) is True
    assert not Server.objects.filter(pk=server.pk).exists()
    assert target_states() == [("triton-1", "removed"), ("triton-1", "removed"), ("triton-2", "pending")]
    removed = AuditEvent.objects.get(action="server.remove")
    assert removed.source == "worker" and removed.reason.startswith("drained")
    assert Placement.objects.get(pk=wide.pk).removed_at is None  # still wanted on triton-2
    assert drain_server(server.pk) is False  # a second delivery is a no-op


def test_drain_closes_a_placement_left_with_no_server(as_admin, server, placed):
    services.server_remove(actor=as_admin, server=server, drain=True)
    assert services.server_drain(server_id=server.pk) is True
    placed.refresh_from_db()
    assert placed.removed_at is not None
    assert AuditEvent.objects.filter(action="placement.remove", object_id=str(placed.pk)).count() == 1


def test_the_periodic_probe_finishes_a_drain_whose_task_was_lost(as_admin, server, placed):
    services.server_remove(actor=as_admin, server=server, drain=True)
    # The reconciler (or an unload) confirmed the unload, but the drain task never ran.
    PlacementTarget.objects.filter(server=server).update(state=TargetState.REMOVED)
    probe_fleet()
    assert not Server.objects.filter(pk=server.pk).exists()


def test_a_target_placed_while_draining_is_unloaded_too(as_admin, server, other_server, placed):
    services.server_remove(actor=as_admin, server=server, drain=True)
    PlacementTarget.objects.filter(server=server).update(state=TargetState.REMOVED)
    PlacementTarget.objects.filter(server=server).update(state=TargetState.READY)  # as if placed during the drain
    assert services.server_drain_finish(server_id=server.pk) is False
    assert target_states() == [("triton-1", "unloading")]
    assert services.server_drain(server_id=server.pk) is True


@pytest.mark.parametrize("who", ["deployer", "team_admin", "viewer"])
def test_only_platform_admins_remove_or_drain(request, server, placed, who):
    actor = Actor(user=request.getfixturevalue(who), source="ui")
    for drain in (False, True):
        with pytest.raises(PermissionDenied):
            services.server_remove(actor=actor, server=server, drain=drain)
    assert Server.objects.get(pk=server.pk).draining_since is None
    assert target_states() == [("triton-1", "pending")]


def test_a_pool_with_servers_is_refused_naming_them(as_admin, pool, server, other_server):
    with pytest.raises(Conflict) as caught:
        services.pool_delete(actor=as_admin, pool=pool)
    assert "triton-1, triton-2" in caught.value.message
    assert Pool.objects.filter(pk=pool.pk).exists()


def test_pool_update_is_audited_and_refuses_a_taken_name(as_admin, pool):
    Pool.objects.create(name="gpu")
    services.pool_update(actor=as_admin, pool=pool, description="spare CPUs")
    event = AuditEvent.objects.get(action="pool.update")
    assert (event.before["description"], event.after["description"]) == ("CPU servers", "spare CPUs")
    with pytest.raises(Conflict) as caught:
        services.pool_update(actor=as_admin, pool=pool, name="gpu")
    assert caught.value.field == "name"
    assert Pool.objects.get(pk=pool.pk).name == "cpu"


# -- the API: the same service, the same rule ------------------------------------------------------

def test_api_delete_is_409_then_202_with_drain_then_gone(api, platform_admin, server, placed):
    client = api(platform_admin)
    refused = client.delete(f"/api/v1/servers/{server.pk}/")
    assert refused.status_code == 409, refused.json()
    assert "drain" in refused.json()["fields"] and "fraud-scorer" in refused.json()["fields"]["drain"][0]
    accepted = client.delete(f"/api/v1/servers/{server.pk}/?drain=true")
    assert accepted.status_code == 202, accepted.json()
    assert accepted.json()["draining_since"] is not None and accepted.json()["name"] == "triton-1"
    assert client.get(f"/api/v1/servers/{server.pk}/").json()["draining_since"] is not None
    drain_server(server.pk)
    assert client.get(f"/api/v1/servers/{server.pk}/").status_code == 404


@pytest.mark.parametrize("value", ["yes", "1", "True", ""])
def test_api_drain_must_be_true_or_false(api, platform_admin, server, value):
    response = api(platform_admin).delete(f"/api/v1/servers/{server.pk}/?drain={value}")
    assert response.status_code == 400 and "drain" in response.json()["fields"]
    assert Server.objects.filter(pk=server.pk).exists()


def test_api_delete_of_an_empty_server_is_204(api, platform_admin, server):
    assert api(platform_admin).delete(f"/api/v1/servers/{server.pk}/?drain=false").status_code == 204
    assert not Server.objects.exists()


def test_api_team_users_cannot_drain(api, deployer, server, placed):
    assert api(deployer).delete(f"/api/v1/servers/{server.pk}/?drain=true").status_code == 403
    assert Server.objects.get(pk=server.pk).draining_since is None


def test_api_pool_delete_409_names_the_servers(api, platform_admin, pool, server):
    response = api(platform_admin).delete(f"/api/v1/pools/{pool.name}/")
    assert response.status_code == 409 and "triton-1" in response.json()["fields"]["pool"][0]


def test_api_pool_patch_uses_the_same_service(api, platform_admin, deployer, pool):
    client = api(platform_admin)
    response = client.patch("/api/v1/pools/cpu/", {"description": "spare CPUs"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "spare CPUs"
    assert AuditEvent.objects.filter(action="pool.update").count() == 1
    assert client.patch("/api/v1/pools/cpu/", {"description": "spare CPUs"}, format="json").status_code == 200
    assert AuditEvent.objects.filter(action="pool.update").count() == 1  # nothing changed, nothing audited
    Pool.objects.create(name="gpu")
    taken = client.patch("/api/v1/pools/cpu/", {"name": "gpu"}, format="json")
    assert taken.status_code == 409 and "name" in taken.json()["fields"]
    bad = client.patch("/api/v1/pools/cpu/", {"name": "Not A Name", "colour": "red"}, format="json")
    assert bad.status_code == 400 and "colour" in bad.json()["fields"]
    assert api(deployer).patch("/api/v1/pools/cpu/", {"description": "mine"}, format="json").status_code == 403
    assert Pool.objects.get(pk=pool.pk).description == "spare CPUs"


def test_a_server_update_that_changes_nothing_writes_nothing(as_admin, server):
    services.server_update(actor=as_admin, server=server, gpu_count=0, http_url=server.http_url)
    assert not AuditEvent.objects.filter(action="server.update").exists()


def test_a_draining_server_takes_no_new_placement(as_admin, deployer, server, other_server, placed):
    from django.core.exceptions import ValidationError

    services.server_remove(actor=as_admin, server=server, drain=True)
    make_version(placed.model, 2)
    with pytest.raises(ValidationError) as refused:
        placement_create(actor=Actor(user=deployer, source="api"), model=placed.model, versions=[2],
                         servers=[other_server, server])
    assert refused.value.message_dict["servers"] == ["triton-1 is draining, to be removed; place the model elsewhere."]
    assert Placement.objects.count() == 1
