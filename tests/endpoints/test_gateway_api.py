"""The gateway's two calls: GET /api/v1/gateway/table (ETag, 304) and POST
/api/v1/gateway/replicas/report, both behind SWITCHYARD_GATEWAY_KEY; and the replica selectors."""
import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.common import tasks
from controlplane.endpoints.models import GatewayReplica, RoutingTableState
from controlplane.endpoints.publication import REDIS_KEY, REDIS_VERSION_KEY, publish_if_changed
from controlplane.endpoints.replicas import all_replicas_serve, guard_trips, replicas_status
from controlplane.fleet.models import Pool, Server
from gateway.table import parse_table

KEY = "test-gateway-key-0123456789"
TABLE = "/api/v1/gateway/table"
REPORT = "/api/v1/gateway/replicas/report"


@pytest.fixture(autouse=True)
def gateway_key(settings):
    settings.SWITCHYARD_GATEWAY_KEY = KEY


@pytest.fixture
def gw(client):
    """A Django test client that speaks as a gateway."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {KEY}"
    return client


TRIP = {"endpoint": "vision.fraud", "variant": "green", "version": 3, "errors": 10, "requests": 10,
        "error_ratio": 1.0, "tripped_at": 1764600100.25}


def report(**overrides):
    body = {"replica_id": "gw-a:1234:0", "address": "10.0.0.9:8080", "table_version": 3,
            "started_at": 1764600000.5, "stats": {"requests": 10, "in_flight": 1}}
    body.update(overrides)
    return body


def post(client, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(REPORT, data, content_type="application/json", **extra)


# -- auth ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, method", [(TABLE, "get"), (REPORT, "post")])
def test_no_configured_key_is_a_503_that_says_so(client, settings, url, method, db):
    settings.SWITCHYARD_GATEWAY_KEY = ""
    response = getattr(client, method)(url, HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 503
    assert "SWITCHYARD_GATEWAY_KEY" in response.json()["detail"]


@pytest.mark.parametrize("header", [None, "", f"Token {KEY}", f"Bearer {KEY}x", "Bearer", f"bearer {KEY[:-1]}"])
@pytest.mark.parametrize("url, method", [(TABLE, "get"), (REPORT, "post")])
def test_a_missing_or_wrong_key_is_a_401_in_json(client, db, header, url, method):
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = getattr(client, method)(url, **extra)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "gateway key" in response.json()["detail"]
    assert GatewayReplica.objects.count() == 0


def test_an_api_token_or_a_session_is_not_the_gateway_key(client, api, platform_admin, db):
    client.force_login(platform_admin)
    assert client.get(TABLE).status_code == 401


# -- the table -------------------------------------------------------------------------------------

def test_the_first_fetch_publishes_and_returns_the_table_with_its_etag(gw, db):
    response = gw.get(TABLE)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["ETag"] == '"1"'
    assert response["Cache-Control"] == "no-cache"
    table = parse_table(json.loads(response.content))
    assert table.version == 1 == RoutingTableState.objects.get(pk=1).version


@pytest.fixture
def published(db, django_capture_on_commit_callbacks):
    pool = Pool.objects.create(name="gw-pool")
    Server.objects.create(name="gw-0", pool=pool, http_url="http://10.2.0.1:8000")
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.delete(REDIS_KEY, REDIS_VERSION_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        version = publish_if_changed()
    yield version
    client.delete(REDIS_KEY, REDIS_VERSION_KEY)
    client.close()


def test_the_table_is_one_query_and_the_same_bytes_as_on_redis(gw, published):
    with CaptureQueriesContext(connection) as queries:
        response = gw.get(TABLE)
    assert response.status_code == 200 and len(queries) == 1
    assert response.content == redis.Redis.from_url(django_settings.REDIS_URL).get(REDIS_KEY)


@pytest.mark.parametrize("if_none_match, status", [
    ('"1"', 304), ('W/"1"', 304), ('"7", "1"', 304), ("*", 304), ('"2"', 200), ("1", 200), ("", 200),
])
def test_if_none_match_with_the_current_version_is_a_304(gw, published, if_none_match, status):
    response = gw.get(TABLE, HTTP_IF_NONE_MATCH=if_none_match)
    assert response.status_code == status
    assert response["ETag"] == '"1"'
    if status == 304:
        assert response.content == b""


def test_a_new_version_changes_the_etag(gw, published, django_capture_on_commit_callbacks):
    Server.objects.update(http_url="http://10.2.0.2:8000")  # unreferenced: the table does not change
    with django_capture_on_commit_callbacks(execute=True):
        assert publish_if_changed() == 1
    RoutingTableState.objects.filter(pk=1).update(version=2)  # as a later publish would
    response = gw.get(TABLE, HTTP_IF_NONE_MATCH='"1"')
    assert response.status_code == 200 and response["ETag"] == '"2"'


def test_only_get_on_the_table(gw, published):
    assert gw.post(TABLE).status_code == 405


# -- replica reports -------------------------------------------------------------------------------

def test_a_report_is_upserted_and_answered_204(gw, db):
    before = timezone.now()
    response = post(gw, report())
    assert response.status_code == 204 and response.content == b""
    replica = GatewayReplica.objects.get()
    assert (replica.replica_id, replica.address, replica.table_version) == ("gw-a:1234:0", "10.0.0.9:8080", 3)
    assert replica.started_at == datetime.fromtimestamp(1764600000.5, tz=UTC)
    assert replica.stats == {"requests": 10, "in_flight": 1}
    assert replica.last_seen_at >= before
    assert post(gw, report(table_version=4, address="", stats={})).status_code == 204
    replica = GatewayReplica.objects.get()
    assert (replica.table_version, replica.address, replica.stats) == (4, "", {})


def test_a_report_writes_no_audit_event(gw, db):
    from controlplane.audit.models import AuditEvent

    post(gw, report())
    assert AuditEvent.objects.count() == 0


@pytest.mark.parametrize("changes, field", [
    ({"replica_id": ""}, "replica_id"),
    ({"replica_id": "a b"}, "replica_id"),
    ({"replica_id": "x" * 129}, "replica_id"),
    ({"replica_id": 7}, "replica_id"),
    ({"address": "a" * 256}, "address"),
    ({"address": None}, "address"),
    ({"address": "a\u0000b"}, "address"),
    ({"table_version": -1}, "table_version"),
    ({"table_version": True}, "table_version"),
    ({"table_version": "3"}, "table_version"),
    ({"table_version": 3.0}, "table_version"),
    ({"table_version": 2**63}, "table_version"),
    ({"started_at": "1764600000"}, "started_at"),
    ({"started_at": False}, "started_at"),
    ({"started_at": -1}, "started_at"),
    ({"started_at": 1e300}, "started_at"),
    ({"stats": []}, "stats"),
    ({"stats": {"blob": "x" * 4100}}, "stats"),
    ({"extra": 1}, "extra"),
    ({"started_at": 10**400}, "started_at"),  # an int too large for a float is a 400, not a 500
    # guard trips (gateway/guard.py)
    ({"trips": {}}, "trips"),
    ({"trips": [TRIP] * 2}, "trips"),  # the same variant twice
    ({"trips": [TRIP | {"variant": f"v{i}"} for i in range(17)]}, "trips"),  # at most 16
    ({"trips": [TRIP | {"extra": 1}]}, "trips"),
    ({"trips": [{k: v for k, v in TRIP.items() if k != "tripped_at"}]}, "trips"),
    ({"trips": [TRIP | {"endpoint": "no-team"}]}, "trips"),
    ({"trips": [TRIP | {"variant": "a b"}]}, "trips"),
    ({"trips": [TRIP | {"version": 0}]}, "trips"),
    ({"trips": [TRIP | {"version": "3"}]}, "trips"),
    ({"trips": [TRIP | {"requests": 0, "errors": 0}]}, "trips"),
    ({"trips": [TRIP | {"errors": 11}]}, "trips"),  # more errors than requests
    ({"trips": [TRIP | {"errors": True}]}, "trips"),
    ({"trips": [TRIP | {"error_ratio": 1.5}]}, "trips"),
    ({"trips": [TRIP | {"error_ratio": "1"}]}, "trips"),
    ({"trips": [TRIP | {"tripped_at": -1}]}, "trips"),
    ({"trips": [TRIP | {"tripped_at": 10**400}]}, "trips"),
    ({"trips": [TRIP | {"endpoint": "vision.x\u0000"}]}, "trips"),
])
def test_a_report_is_strict_and_names_the_field(gw, db, changes, field):
    response = post(gw, report(**changes))
    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert GatewayReplica.objects.count() == 0


@pytest.mark.parametrize("body, status", [
    ("not json", 400), ("[]", 400), ('{"replica_id": NaN}', 400), ("x" * 17000, 413),
    ("", 415),  # the test client sends no Content-Type with an empty body
])
def test_a_malformed_report_is_refused(gw, db, body, status):
    assert post(gw, body).status_code == status


def test_a_missing_field_is_named(gw, db):
    body = report()
    del body["stats"]
    response = post(gw, body)
    assert response.status_code == 400 and response.json()["fields"] == {"stats": ["This field is required."]}


def test_a_report_must_be_json(gw, db):
    assert gw.post(REPORT, "replica_id=a", content_type="application/x-www-form-urlencoded").status_code == 415


def test_a_nul_in_a_report_is_refused_not_a_500(gw, db):
    response = post(gw, report(stats={"note": "a\u0000b"}))
    assert response.status_code == 400


def test_a_report_needs_no_csrf_token(db):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {KEY}")
    assert post(strict, report()).status_code == 204


# -- guard trips -----------------------------------------------------------------------------------

@pytest.fixture
def queued(monkeypatch):
    """The tasks enqueue() sends (after the commit), as (name, args)."""
    sent = []
    monkeypatch.setattr(tasks, "_send", lambda name, args, kwargs, countdown=None: sent.append((name, args)))
    return sent


def test_a_report_without_trips_is_still_taken(gw, db):
    body = report()
    assert "trips" not in body  # a gateway older than the guard
    assert post(gw, body).status_code == 204
    assert GatewayReplica.objects.get().trips == []


def test_a_new_trip_is_stored_and_queues_the_rollback_task_once(gw, db, queued, django_capture_on_commit_callbacks):
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert post(gw, report(trips=[TRIP])).status_code == 204
    assert queued == [("deployments.guard_tripped", ("vision.fraud", 3))]
    [stored] = GatewayReplica.objects.get().trips
    assert stored == TRIP | {"received_at": stored["received_at"]}
    assert before.timestamp() <= stored["received_at"] <= timezone.now().timestamp()

    # The next reports repeat the trip while it holds: nothing new, nothing queued.
    with django_capture_on_commit_callbacks(execute=True):
        assert post(gw, report(trips=[TRIP], table_version=4)).status_code == 204
    assert len(queued) == 1
    replica = GatewayReplica.objects.get()
    assert replica.table_version == 4 and len(replica.trips) == 1
    # A report after the trip ended (a new table) keeps the record; the selector still finds it.
    with django_capture_on_commit_callbacks(execute=True):
        assert post(gw, report(trips=[], table_version=5)).status_code == 204
    assert len(GatewayReplica.objects.get().trips) == 1 and len(queued) == 1

    # Another worker tripping on the same green is a new trip of its own replica.
    other = TRIP | {"errors": 9, "error_ratio": 0.9, "tripped_at": 1764600100.5}
    with django_capture_on_commit_callbacks(execute=True):
        assert post(gw, report(replica_id="gw-a:1234/w1", trips=[other])).status_code == 204
    assert queued[1:] == [("deployments.guard_tripped", ("vision.fraud", 3))]
    # The same green tripping again under a fresh guard (a retried deployment) is new too.
    again = TRIP | {"tripped_at": 1764600200.0}
    with django_capture_on_commit_callbacks(execute=True):
        assert post(gw, report(trips=[again])).status_code == 204
    assert len(queued) == 3 and len(GatewayReplica.objects.get(replica_id="gw-a:1234:0").trips) == 2


def test_a_refused_report_stores_and_queues_nothing(gw, db, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert post(gw, report(trips=[TRIP], table_version=-1)).status_code == 400
    assert queued == [] and GatewayReplica.objects.count() == 0


def test_guard_trips_lists_one_endpoint_versions_trips_since_a_time(gw, db, queued):
    start = timezone.now()
    post(gw, report(trips=[TRIP, TRIP | {"variant": "canary", "version": 4}]))
    post(gw, report(replica_id="gw-b:1/w0", trips=[TRIP | {"endpoint": "vision.other"}]))
    post(gw, report(replica_id="gw-c:1/w0", trips=[TRIP | {"errors": 5, "error_ratio": 0.5}]))
    found = guard_trips("vision.fraud", 3, start)
    assert [(t["replica_id"], t["errors"]) for t in found] == [("gw-a:1234:0", 10), ("gw-c:1/w0", 5)]
    assert found[0]["tripped_at"] == datetime.fromtimestamp(TRIP["tripped_at"], tz=UTC)
    assert start <= found[0]["received_at"] <= timezone.now()
    assert set(found[0]) == {"replica_id", "endpoint", "variant", "version", "errors", "requests", "error_ratio",
                             "tripped_at", "received_at"}
    assert [t["variant"] for t in guard_trips("vision.fraud", 4, start)] == ["canary"]
    assert guard_trips("vision.fraud", 3, timezone.now() + timedelta(seconds=1)) == []  # received before
    assert guard_trips("vision.fraud", 5, start) == []


def test_old_trips_are_forgotten_and_a_replica_keeps_the_newest(gw, db, queued, monkeypatch):
    from controlplane.endpoints import replicas

    post(gw, report(trips=[TRIP]))
    replica = GatewayReplica.objects.get()
    replica.trips[0]["received_at"] -= replicas.TRIP_RETENTION_S + 1
    replica.save()
    post(gw, report(trips=[TRIP | {"tripped_at": 1764600300.0}]))
    assert [t["tripped_at"] for t in GatewayReplica.objects.get().trips] == [1764600300.0]
    monkeypatch.setattr(replicas, "MAX_KEPT_TRIPS", 3)
    for i in range(5):
        post(gw, report(trips=[TRIP | {"tripped_at": 1764600400.0 + i}]))
    assert [t["tripped_at"] for t in GatewayReplica.objects.get().trips] == [1764600402.0, 1764600403.0, 1764600404.0]


def test_what_the_gateway_reports_after_a_trip_is_what_the_control_plane_takes(gw, db, queued):
    """The two sides of the contract together: gateway.guard's trip in gateway.tablesource's report."""
    from gateway.guard import Guards
    from gateway.table import FORMAT, parse_table
    from gateway.tablesource import TableSource

    guard = {"max_error_ratio": 0.05, "min_requests": 10, "window_s": 10}
    table = parse_table({
        "format": FORMAT, "version": 7, "generated_at": 1.0, "tokens": [],
        "servers": [{"id": 1, "name": "a", "url": "http://127.0.0.1:9", "healthy": True}],
        "endpoints": [{"name": "vision.fraud", "team": "vision", "access": "open", "sticky": None, "labels": {},
                       "variants": [{"name": "green", "version": 3, "weight": 50, "model": "m", "servers": [1],
                                     "guard": guard},
                                    {"name": "blue", "version": 2, "weight": 50, "model": "m", "servers": [1],
                                     "guard": None}],
                       "shadow": None}],
    })
    guards = Guards()
    guards.sync(table, now=0.0)
    green = table.endpoints["vision.fraud"].variants[0]
    for i in range(10):
        trip = guards.observe("vision.fraud", "green", 3, green.guard, True, i * 0.01, 1764600100.0 + i)
    assert trip is not None
    source = TableSource(control_plane="http://127.0.0.1:9", replica_id="gw-a:8080/w0", address="http://gw-a:8080",
                         stats=lambda: {"requests": 10}, trips=guards.report)
    body = source.report()
    assert body["trips"] == [trip.as_json()]
    assert post(gw, json.loads(json.dumps(body, allow_nan=False))).status_code == 204
    [found] = guard_trips("vision.fraud", 3, timezone.now() - timedelta(minutes=1))
    assert (found["replica_id"], found["variant"], found["errors"], found["requests"]) == ("gw-a:8080/w0", "green", 10, 10)


# -- replica selectors -----------------------------------------------------------------------------

def seen(replica_id, version, seconds_ago):
    GatewayReplica.objects.create(replica_id=replica_id, table_version=version,
                                  last_seen_at=timezone.now() - timedelta(seconds=seconds_ago))


def test_replicas_status_says_how_stale_each_is_and_whether_it_serves_the_current_table(db):
    RoutingTableState.objects.create(pk=1, version=5)
    seen("a", 5, 1)
    seen("b", 4, 3)
    seen("c", 5, 60)
    rows = {r.replica_id: r for r in replicas_status()}
    assert {k: (r.current, r.live) for k, r in rows.items()} == {"a": (True, True), "b": (False, True), "c": (True, False)}
    assert 2.5 < rows["b"].staleness_s < 10


def test_all_replicas_serve_counts_live_replicas_only(db):
    assert all_replicas_serve(5)  # no gateway: nothing to wait for
    seen("a", 5, 1)
    seen("b", 4, 30)  # gone quiet: not counted
    assert all_replicas_serve(5) and all_replicas_serve(4)
    assert not all_replicas_serve(5, live_within_s=60)
    seen("c", 6, 2)  # newer than asked is fine
    assert all_replicas_serve(5)
    assert not all_replicas_serve(6)


def test_the_gateway_calls_are_not_in_the_public_schema(client, platform_admin):
    client.force_login(platform_admin)
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert paths and not [p for p in paths if p.startswith("/api/v1/gateway/")]
