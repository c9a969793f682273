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

from controlplane.endpoints.models import GatewayReplica, RoutingTableState
from controlplane.endpoints.publication import REDIS_KEY, REDIS_VERSION_KEY, publish_if_changed
from controlplane.endpoints.replicas import all_replicas_serve, replicas_status
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
