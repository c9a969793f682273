"""Publishing the routing table: a new version only when the content changes, pushed to a real
Redis (SET and PUBLISH), and a publish after each kind of change the table depends on, through
the real services."""
import json
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from controlplane.accounts import services as accounts
from controlplane.accounts.models import Role
from controlplane.audit.context import Actor
from controlplane.celery import app
from controlplane.endpoints import publication
from controlplane.endpoints.models import Endpoint, GatewayReplica, RoutingTableState
from controlplane.endpoints.publication import (
    REDIS_KEY,
    REDIS_VERSION_KEY,
    publish_if_changed,
    request_publish,
    table_json,
)
from controlplane.fleet import services as fleet
from controlplane.fleet.models import Pool, Server, ServerStatus
from controlplane.placements import services as placements
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.placements.services.state import Claim, Outcome, record_load, transition
from controlplane.registry.labels import label_delete, label_set
from gateway.table import FORMAT, parse_table, redis_channel
from tests.quotas.conftest import make_version
from workers import endpoints as endpoint_tasks


@pytest.fixture
def rds():
    """The test Redis (REDIS_URL), without the table keys an earlier test or run left behind."""
    assert django_settings.REDIS_URL, "these tests need a real Redis: set REDIS_URL"
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.delete(REDIS_KEY, REDIS_VERSION_KEY)
    yield client
    client.delete(REDIS_KEY, REDIS_VERSION_KEY)
    client.close()


@pytest.fixture
def routed(team, model, rds):
    """vision.scorer follows stable (v1), READY on one server."""
    make_version(model, 1), make_version(model, 2)
    label_set(actor=Actor.system(), model=model, name="stable", version=1, reason="seed")
    server = Server.objects.create(name="pub-0", pool=Pool.objects.create(name="pub"), http_url="http://10.1.0.1:8000")
    placement = Placement.objects.create(model=model, versions=[1], rendered_config={})
    PlacementTarget.objects.create(placement=placement, model=model, server=server, server_name=server.name,
                                   state=TargetState.READY, state_changed_at=timezone.now())
    Endpoint.objects.create(team=team, model=model, name="scorer", kind="label", label="stable")
    return server


def version() -> int:
    return RoutingTableState.objects.get(pk=1).version


def committed(django_capture_on_commit_callbacks, fn, *args, **kwargs):
    """Run a service and then its after-commit work (the test's transaction never commits)."""
    with django_capture_on_commit_callbacks(execute=True):
        return fn(*args, **kwargs)


def test_a_version_is_published_only_when_the_content_changes(routed, django_capture_on_commit_callbacks):
    assert RoutingTableState.objects.filter(pk=1).count() == 0
    first = committed(django_capture_on_commit_callbacks, publish_if_changed)
    state = RoutingTableState.objects.get(pk=1)
    assert first == state.version == 1 and state.published_at is not None
    assert parse_table(state.body).endpoints["vision.scorer"].variants[0].servers == (routed.pk,)
    time.sleep(0.01)  # generated_at differs, the content does not
    assert committed(django_capture_on_commit_callbacks, publish_if_changed) == 1
    assert RoutingTableState.objects.get(pk=1).body == state.body
    Server.objects.filter(pk=routed.pk).update(status=ServerStatus.DOWN)
    assert committed(django_capture_on_commit_callbacks, publish_if_changed) == 2
    assert RoutingTableState.objects.get(pk=1).body["version"] == 2


def test_the_digest_ignores_version_and_time(routed):
    table = {"format": FORMAT, "version": 3, "generated_at": 1.0, "servers": [], "tokens": [], "endpoints": []}
    assert publication.table_digest(table) == publication.table_digest(table | {"version": 9, "generated_at": 2.0})


@pytest.fixture
def builds(monkeypatch):
    calls = []
    monkeypatch.setattr(publication, "publish_if_changed", lambda: calls.append(1))
    return calls


def test_several_requests_in_one_transaction_publish_once(routed, builds, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            request_publish()
            request_publish()
            with transaction.atomic():
                request_publish()
    assert builds == [1]


def test_a_request_in_a_rolled_back_savepoint_does_not_hide_a_later_one(routed, builds, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    request_publish()
                    raise RuntimeError
            except RuntimeError:
                pass
            request_publish()
    assert callbacks == [publication.publish_after_commit] and builds == [1]


def test_nothing_publishes_before_the_commit_nor_after_a_rollback(routed, builds, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                request_publish()
                assert builds == []
                raise RuntimeError
        except RuntimeError:
            pass
    assert callbacks == [] and builds == []


def test_the_table_is_set_and_published_on_redis_as_the_same_bytes(routed, rds, django_capture_on_commit_callbacks):
    pubsub = rds.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(redis_channel(django_settings.REDIS_URL))
    try:
        pubsub.get_message(timeout=1.0)  # the subscription is in place
        number = committed(django_capture_on_commit_callbacks, publish_if_changed)
        message = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # other test runs may publish on the same channel
            message = pubsub.get_message(timeout=1.0)
            if message and json.loads(message["data"])["endpoints"] and \
                    json.loads(message["data"])["version"] == number and b"vision.scorer" in message["data"]:
                break
        assert message is not None, "no table published on Redis"
    finally:
        pubsub.close()
    stored = RoutingTableState.objects.get(pk=1)
    assert message["data"] == rds.get(REDIS_KEY) == table_json(stored.body).encode()
    assert int(rds.get(REDIS_VERSION_KEY)) == number
    assert parse_table(json.loads(message["data"])).version == number


def test_redis_keeps_the_newest_version_when_pushes_arrive_out_of_order(rds):
    assert publication.push_to_redis('{"version":5}', 5)
    assert not publication.push_to_redis('{"version":4}', 4)  # a late push of an older table
    assert rds.get(REDIS_KEY) == b'{"version":5}'
    assert publication.push_to_redis('{"version":4}', 4, force=True)
    assert rds.get(REDIS_KEY) == b'{"version":4}'


def test_redis_down_fails_nothing(routed, settings, caplog, django_capture_on_commit_callbacks):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert committed(django_capture_on_commit_callbacks, publish_if_changed) == 1
    assert version() == 1
    assert "not pushed to Redis" in caplog.text
    assert publication.repair_redis() is False


def test_no_redis_url_means_no_push(routed, settings, rds, django_capture_on_commit_callbacks):
    settings.REDIS_URL = ""
    committed(django_capture_on_commit_callbacks, publish_if_changed)
    assert rds.get(REDIS_KEY) is None


def test_repair_pushes_the_stored_table_when_redis_lost_it_or_holds_another_databases(routed, rds,
                                                                                      django_capture_on_commit_callbacks):
    committed(django_capture_on_commit_callbacks, publish_if_changed)
    assert publication.repair_redis() is False  # Redis holds it
    rds.delete(REDIS_KEY, REDIS_VERSION_KEY)  # Redis restarted without persistence
    assert publication.repair_redis() is True
    assert json.loads(rds.get(REDIS_KEY))["version"] == 1
    rds.set(REDIS_VERSION_KEY, 99)  # a newer version from a database since reset
    assert publication.repair_redis() is True
    assert int(rds.get(REDIS_VERSION_KEY)) == 1


def test_the_beat_task_publishes_repairs_and_prunes(routed, rds, settings, django_capture_on_commit_callbacks):
    assert "endpoints.publish_table" in app.tasks
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "endpoints.publish_table")
    assert entry["schedule"] == 5.0
    now = timezone.now()
    GatewayReplica.objects.create(replica_id="old", last_seen_at=now - timedelta(hours=1, seconds=5))
    GatewayReplica.objects.create(replica_id="recent", last_seen_at=now - timedelta(minutes=59))
    assert committed(django_capture_on_commit_callbacks, endpoint_tasks.publish_table) == 1
    assert json.loads(rds.get(REDIS_KEY))["version"] == 1
    assert list(GatewayReplica.objects.values_list("replica_id", flat=True)) == ["recent"]


def test_the_beat_task_catches_a_token_expiring(team, team_admin, rds, django_capture_on_commit_callbacks):
    token, _ = committed(django_capture_on_commit_callbacks, accounts.token_create,
                         actor=Actor(user=team_admin, source="api"), team=team, name="t", scopes=["infer"],
                         expires_at=timezone.now() + timedelta(days=1))
    before = version()
    token.__class__.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert committed(django_capture_on_commit_callbacks, endpoint_tasks.publish_table) == before + 1
    assert RoutingTableState.objects.get(pk=1).body["tokens"] == []


# -- hooks: each kind of change publishes a new version, through the real service ---------------

@pytest.fixture
def baseline(routed, django_capture_on_commit_callbacks):
    return committed(django_capture_on_commit_callbacks, publish_if_changed)


def test_moving_a_label_publishes(model, baseline, django_capture_on_commit_callbacks):
    committed(django_capture_on_commit_callbacks, label_set, actor=Actor.system(), model=model, name="stable",
              version=2, reason="release")
    assert version() == baseline + 1
    assert RoutingTableState.objects.get(pk=1).body["endpoints"][0]["variants"][0]["version"] == 2


def test_deleting_a_label_publishes(model, baseline, django_capture_on_commit_callbacks):
    committed(django_capture_on_commit_callbacks, label_delete, actor=Actor.system(), model=model, name="stable",
              reason="withdrawn")
    assert version() == baseline + 1
    assert RoutingTableState.objects.get(pk=1).body["endpoints"][0]["variants"] == []


def test_registering_a_version_publishes_the_new_latest(model, baseline, django_capture_on_commit_callbacks, s3):
    from controlplane.registry.services import version_register

    committed(django_capture_on_commit_callbacks, version_register, actor=Actor.system(), model=model, version=3,
              contents={"model.py": b"x"})
    assert version() == baseline + 1
    assert RoutingTableState.objects.get(pk=1).body["endpoints"][0]["labels"]["latest"] == 3


def test_a_target_becoming_ready_publishes(model, routed, baseline, django_capture_on_commit_callbacks):
    placement = Placement.objects.create(model=model, versions=[1], rendered_config={})
    other = Server.objects.create(name="pub-1", pool=routed.pool, http_url="http://10.1.0.2:8000")
    target = PlacementTarget.objects.create(placement=placement, model=model, server=other, server_name=other.name,
                                            state=TargetState.LOADING, attempt=1, state_changed_at=timezone.now())
    claim = Claim(target_id=target.pk, attempt=1, url=other.http_url, server_name=other.name,
                  name=model.triton_name, versions=(1,), config={})
    committed(django_capture_on_commit_callbacks, record_load, claim, Outcome(TargetState.READY, seconds=1.0),
              Actor.system())
    assert version() == baseline + 1
    assert RoutingTableState.objects.get(pk=1).body["endpoints"][0]["variants"][0]["servers"] == [routed.pk, other.pk]


def test_removing_a_placement_publishes(model, deployer, baseline, django_capture_on_commit_callbacks):
    placement = Placement.objects.get()
    committed(django_capture_on_commit_callbacks, placements.placement_remove,
              actor=Actor(user=deployer, source="api"), placement=placement)
    assert PlacementTarget.objects.get().state == TargetState.UNLOADING
    assert version() == baseline + 1
    assert RoutingTableState.objects.get(pk=1).body["endpoints"][0]["variants"][0]["servers"] == []


def test_a_target_found_stuck_publishes(model, baseline, django_capture_on_commit_callbacks):
    target = PlacementTarget.objects.select_related("model__team").get()
    committed(django_capture_on_commit_callbacks, transition, target, TargetState.STUCK, Actor.system(),
              error="stuck", reason="test")
    assert version() == baseline + 1


def test_editing_a_server_url_publishes(routed, platform_admin, baseline, django_capture_on_commit_callbacks):
    committed(django_capture_on_commit_callbacks, fleet.server_update, actor=Actor(user=platform_admin, source="api"),
              server=routed, http_url="http://10.1.0.9:8000")
    assert version() == baseline + 1
    assert RoutingTableState.objects.get(pk=1).body["servers"][0]["url"] == "http://10.1.0.9:8000"


def test_a_server_going_down_publishes(routed, baseline, django_capture_on_commit_callbacks):
    committed(django_capture_on_commit_callbacks, fleet.server_record_probe, server=routed,
              result=fleet.ProbeResult(status=ServerStatus.DOWN, error="refused"))
    assert version() == baseline + 1
    assert RoutingTableState.objects.get(pk=1).body["servers"][0]["healthy"] is False


def test_issuing_and_revoking_a_token_publish(team, team_admin, baseline, django_capture_on_commit_callbacks):
    actor = Actor(user=team_admin, source="api")
    token, _ = committed(django_capture_on_commit_callbacks, accounts.token_create, actor=actor, team=team, name="t",
                         scopes=["infer"], expires_at=timezone.now() + timedelta(days=1))
    assert version() == baseline + 1
    committed(django_capture_on_commit_callbacks, accounts.token_revoke, actor=actor, token=token)
    assert version() == baseline + 2
    assert RoutingTableState.objects.get(pk=1).body["tokens"] == []


def test_membership_changes_publish(team, team_admin, deployer, baseline, django_capture_on_commit_callbacks):
    committed(django_capture_on_commit_callbacks, accounts.token_create, actor=Actor(user=deployer, source="api"),
              user=deployer, name="mine", scopes=["infer", "deploy"], expires_at=timezone.now() + timedelta(days=1))
    after_issue = version()
    actor = Actor(user=team_admin, source="api")
    committed(django_capture_on_commit_callbacks, accounts.membership_set, actor=actor, team=team, user=deployer,
              role=Role.VIEWER)
    assert version() == after_issue + 1
    assert RoutingTableState.objects.get(pk=1).body["tokens"][0]["scopes"] == ["infer"]
    committed(django_capture_on_commit_callbacks, accounts.membership_remove, actor=actor, team=team, user=deployer)
    assert version() == after_issue + 2
    assert RoutingTableState.objects.get(pk=1).body["tokens"] == []
