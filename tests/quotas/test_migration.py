"""quotas 0002: active reservations get their devices, from their placement's rendered config
where a target references them, else the lowest indexes; gone servers hold none.

Run twice: calling the migration's function on rows made with today's models (fast, every rule),
and for real, migrating the quotas app back to 0001 and forward again on the test database.
"""
import importlib

import pytest
from django.apps import apps as current_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import Placement, PlacementTarget
from controlplane.quotas.models import Reservation
from controlplane.quotas.selectors import quota_usage
from tests.quotas.conftest import make_model, make_version

migration = importlib.import_module("controlplane.quotas.migrations.0002_reservation_devices")

GPU = "KIND_GPU"


def build(team, reservation_model):
    """Rows as 0001 left them, one per rule. Returns {case: (reservation id, target id or None)}."""
    pool = Pool.objects.create(name="mig")
    four = Server.objects.create(name="four", pool=pool, http_url="http://127.0.0.1:9", gpu_count=4)
    eight = Server.objects.create(name="eight", pool=pool, http_url="http://127.0.0.1:9", gpu_count=8)
    cpu = Server.objects.create(name="cpu", pool=pool, http_url="http://127.0.0.1:9", gpu_count=0)
    gone = Server.objects.create(name="gone", pool=pool, http_url="http://127.0.0.1:9", gpu_count=8)
    rows = {}

    def reservation(case, gpus, server, kind="placement", released=False, groups=None, versions=(1,)):
        model = make_model(team, f"model-{len(rows)}")  # one active target per (model, server)
        version = [make_version(model, n) for n in versions][-1]
        r = reservation_model.objects.create(
            team_id=team.pk, gpus=gpus, kind=kind, version_id=version.pk,
            server_id=server.pk if server else None, server_name=server.name if server else "old",
            holder="deployment 1" if kind == "deployment" else f"placement {case}",
            released_at=timezone.now() if released else None,
        )
        target = None
        if groups is not None:
            placement = Placement.objects.create(
                model=model, versions=list(versions), rendered_config={"name": model.triton_name, "instance_group": groups}
            )
            target = PlacementTarget.objects.create(
                placement=placement, model=model, server=server, server_name=server.name, gpus=gpus,
                reservation_id=r.pk, state_changed_at=timezone.now(), state="removed" if released else "ready",
            )
        rows[case] = (r.pk, target.pk if target else None)

    # KIND_GPU without gpus, 2 versions: 0001 counted 1 x 2; Triton takes all 4 GPUs once.
    reservation("all", 2, four, groups=[{"kind": GPU, "count": 1}], versions=(1, 2))
    # 2 instances on GPUs 1 and 3: 0001 counted 4; the devices are 2.
    reservation("listed", 4, eight, groups=[{"kind": GPU, "count": 2, "gpus": [1, 3]}])
    # No target (a deployment's surge): the lowest indexes, as many as before.
    reservation("surge", 3, eight, kind="deployment")
    # More than the server has: all of its GPUs.
    reservation("too many", 6, four, kind="deployment")
    # A config that no longer fits the server (GPU 6 of a 4-GPU server): fall back.
    reservation("misfit", 1, four, groups=[{"kind": GPU, "gpus": [6]}])
    # A config that takes no device now (KIND_CPU) though a reservation was made: fall back.
    reservation("cpu config", 1, eight, groups=[{"kind": "KIND_CPU"}])
    # A server without GPUs: nothing to hold.
    reservation("cpu server", 1, cpu, kind="deployment")
    # Released: history, left alone.
    reservation("released", 5, eight, released=True, groups=[{"kind": GPU}])
    # Its server deregistered: it holds nothing.
    reservation("server gone", 2, gone, kind="deployment")
    gone.delete()
    return rows, {"four": four.pk, "eight": eight.pk}


EXPECTED = {  # case: (devices, gpus, target gpus)
    "all": ([0, 1, 2, 3], 4, 4),
    "listed": ([1, 3], 2, 2),
    "surge": ([0, 1, 2], 3, None),
    "too many": ([0, 1, 2, 3], 4, None),
    "misfit": ([0], 1, 1),
    "cpu config": ([0], 1, 1),
    "cpu server": ([], 1, None),
    "released": ([], 5, 5),
    "server gone": ([], 2, None),
}


def check(rows, team, servers):
    for case, (reservation_id, target_id) in rows.items():
        r = Reservation.objects.get(pk=reservation_id)
        devices, gpus, target_gpus = EXPECTED[case]
        assert (case, r.devices, r.gpus) == (case, devices, gpus)
        if target_id is not None:
            assert (case, PlacementTarget.objects.get(pk=target_id).gpus) == (case, target_gpus)
    # four: 0-3 (all, too many, misfit overlap); eight: 0-2 (surge, cpu config) and 1, 3 (listed)
    assert quota_usage(team).held == 4 + 4


def test_the_conversion_follows_each_rule(team):
    rows, servers = build(team, Reservation)
    migration.convert_reservations(current_apps, None)
    check(rows, team, servers)


def test_running_the_conversion_twice_changes_nothing(team):
    rows, servers = build(team, Reservation)
    migration.convert_reservations(current_apps, None)
    migration.convert_reservations(current_apps, None)
    check(rows, team, servers)


@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_rows_for_real(team):
    """quotas back to 0001 (no devices column), rows written through 0001's model, then forward."""
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    back = [("quotas", "0001_initial")]
    try:
        executor.migrate(back)
        old_state = executor.loader.project_state([n for n in leaves if n[0] != "quotas"] + back)
        OldReservation = old_state.apps.get_model("quotas", "Reservation")
        assert "devices" not in {f.name for f in OldReservation._meta.get_fields()}
        rows, servers = build(team, OldReservation)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(leaves)
    check(rows, team, servers)
