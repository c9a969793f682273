"""gateway.tablesource against a tiny control plane (an HTTP server thread in this test) and a real
Redis (REDIS_URL, default db 13, on a channel and key unique to each test)."""
import asyncio
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway import tablesource
from gateway.table import EMPTY, FORMAT, TableError
from gateway.tablesource import TableSource, http_request
from tests.gateway.gateway_support import run_async

KEY = "gateway-secret"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")


def table(version, *, weight=100, fmt=FORMAT):
    return {
        "format": fmt, "version": version, "generated_at": 1_764_600_000.0 + version,
        "servers": [{"id": 1, "name": "triton-a", "url": "http://127.0.0.1:8000", "healthy": True}],
        "tokens": [],
        "endpoints": [{
            "name": "vision.fraud-scorer", "team": "vision", "access": "open", "sticky": None,
            "labels": {"stable": 2},
            "variants": [{"name": "stable", "version": 2, "weight": weight, "model": "vision.fraud-scorer",
                          "servers": [1], "guard": None}],
            "shadow": None,
        }],
    }


class ControlPlane:
    """The two gateway URLs of the control plane, as controlplane/endpoints/gateway_api.py serves them."""

    def __init__(self):
        self.table = table(1)
        self.status = None  # force an answer status (e.g. 500)
        self.raw = None  # or a body to answer 200 with, as is
        self.requests = []  # (method, path, headers)
        self.reports = []
        self.report_status = 204
        plane = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                plane.requests.append(("GET", self.path, dict(self.headers)))
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, b'{"detail": "Missing or wrong gateway key"}')
                if self.path != "/api/v1/gateway/table":
                    return self._send(404)
                if plane.status:
                    return self._send(plane.status, b'{"detail": "boom"}')
                if plane.raw is not None:
                    return self._send(200, plane.raw, [("ETag", '"1"')])
                etag = f'"{plane.table["version"]}"'
                if self.headers.get("If-None-Match") == etag:
                    return self._send(304, headers=[("ETag", etag)])
                self._send(200, json.dumps(plane.table).encode(), [("ETag", etag), ("Content-Type", "application/json")])

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                plane.requests.append(("POST", self.path, dict(self.headers)))
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401)
                plane.reports.append(json.loads(body))
                self._send(plane.report_status)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def table_gets(self):
        return [h for m, p, h in self.requests if m == "GET"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def plane():
    p = ControlPlane()
    yield p
    p.close()


def run(coro):
    return run_async(coro, 20)


async def eventually(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def source(plane, **kw):
    kw.setdefault("replica_id", "test-replica")
    return TableSource(control_plane=plane.url, key=KEY, **kw)


# -- HTTP poll -----------------------------------------------------------------------------------------

def test_not_ready_until_a_table_arrives(plane):
    src = source(plane)
    assert src.current is EMPTY and not src.has_table and not src.source_ok

    async def go():
        await src.poll_once()

    run(go())
    assert src.has_table and src.current.version == 1 and src.source_ok
    assert src.last_ok_at > 0
    first = plane.table_gets()[0]
    assert first["Authorization"] == f"Bearer {KEY}" and "If-None-Match" not in first


def test_conditional_poll_and_swap(plane):
    src = source(plane)
    swaps = []
    src.on_swap.append(lambda old, new: swaps.append((old.version, new.version)))

    async def go():
        await src.poll_once()
        held = src.current
        await src.poll_once()  # 304
        assert src.current is held and src.source_ok
        plane.table = table(2, weight=7)
        await src.poll_once()
        return held

    v1 = run(go())
    gets = plane.table_gets()
    assert gets[1]["If-None-Match"] == '"1"' and gets[2]["If-None-Match"] == '"1"'
    assert swaps == [(0, 1), (1, 2)]
    assert src.current.version == 2 and src.current.endpoints["vision.fraud-scorer"].variants[0].weight == 7
    # The swap replaced the reference; the old table object is untouched for requests still using it.
    assert v1.version == 1 and v1.endpoints["vision.fraud-scorer"].variants[0].weight == 100


def test_failures_keep_the_last_good_table(plane):
    src = source(plane)

    async def go():
        await src.poll_once()
        plane.status = 500
        await src.poll_once()
        assert src.current.version == 1 and not src.source_ok and "500" in src.last_error
        plane.status = None
        plane.table = table(2)
        await src.poll_once()
        assert src.current.version == 2 and src.source_ok

    run(go())


def test_control_plane_down_keeps_serving(plane):
    src = source(plane)

    async def go():
        await src.poll_once()
        plane.close()
        await src.poll_once()

    run(go())
    assert src.current.version == 1 and not src.source_ok
    assert "ConnectionRefusedError" in src.last_error or "OSError" in src.last_error


def test_wrong_key_is_not_ok(plane):
    src = TableSource(control_plane=plane.url, key="nope")
    run(src.poll_once())
    assert not src.has_table and not src.source_ok and "401" in src.last_error


def test_a_table_breaking_the_contract_is_refused_and_fetched_again(plane):
    src = source(plane)

    async def go():
        await src.poll_once()
        plane.table = table(2, fmt=99)
        await src.poll_once()
        assert src.current.version == 1 and not src.source_ok and "format" in src.last_error
        await src.poll_once()  # must ask for the table again, not send the refused table's ETag

    run(go())
    assert plane.table_gets()[2]["If-None-Match"] == '"1"'


@pytest.mark.parametrize("raw,error", [(b"{not json", "invalid JSON"), (b'"a string"', "refused")])
def test_invalid_json_is_not_ok(plane, raw, error):
    src = source(plane)
    plane.raw = raw
    run(src.poll_once())
    assert not src.has_table and not src.source_ok and error in src.last_error


def test_an_older_version_is_ignored_once_but_taken_when_the_control_plane_went_back(plane):
    src = source(plane)

    async def go():
        plane.table = table(9)
        await src.poll_once()
        plane.table = table(4)
        for _ in range(tablesource.REGRESS_AFTER - 1):
            await src.poll_once()
            assert src.current.version == 9
        await src.poll_once()
        assert src.current.version == 4
        await src.poll_once()  # and now the ETag is the new table's again

    run(go())
    gets = plane.table_gets()
    # Once the answer is older than the table served, the poll asks unconditionally: a 304 would
    # hide that the control plane still says v4.
    assert gets[1]["If-None-Match"] == '"9"'
    assert all("If-None-Match" not in g for g in gets[2:1 + tablesource.REGRESS_AFTER])
    assert gets[-1]["If-None-Match"] == '"4"'


def test_an_older_version_between_newer_ones_does_not_count():
    src = TableSource(control_plane="http://127.0.0.1:9")
    src.offer(table(9), source="redis")
    assert not src._went_back(table(4)) and not src._went_back(table(4))
    assert not src._went_back(table(9))  # the control plane is current again: start over
    assert not src._went_back(table(4)) and not src._went_back(table(4))
    assert src._went_back(table(4))


def test_offer_only_moves_forward():
    src = TableSource(control_plane="http://127.0.0.1:9")
    assert src.offer(table(0), source="redis")  # version 0 still replaces EMPTY
    assert src.offer(table(3), source="redis")
    assert not src.offer(table(3, weight=1), source="redis")
    assert not src.offer(table(2), source="redis")
    assert src.current.version == 3


def test_a_failing_swap_callback_does_not_stop_the_others():
    src = TableSource(control_plane="http://127.0.0.1:9")
    seen = []
    src.on_swap.append(lambda old, new: 1 / 0)
    src.on_swap.append(lambda old, new: seen.append(new.version))
    assert src.offer(table(1), source="redis")
    assert seen == [1]


def test_the_poll_loop_converges(plane):
    src = source(plane, poll_interval=0.05, report_interval=60)

    async def go():
        await src.start()
        try:
            await eventually(lambda: src.current.version == 1)
            plane.table = table(2)
            await eventually(lambda: src.current.version == 2)
        finally:
            await src.stop()

    run(go())


def test_needs_a_source():
    with pytest.raises(ValueError):
        TableSource()


# -- the HTTP client -------------------------------------------------------------------------------------

async def _raw_server(payload: bytes):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"


@pytest.mark.parametrize("payload,body", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"5\"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nETag: \"5\"\r\n\r\nuntil the end", b"until the end"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"5\"\r\n\r\nabc", b"abc"),
])
def test_http_client_reads_every_framing(payload, body):
    async def go():
        server, url = await _raw_server(payload)
        async with server:
            return await http_request("GET", url, {})

    status, headers, got = run(go())
    assert (status, headers["etag"], got) == (200, '"5"', body)


@pytest.mark.parametrize("payload", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # cut short
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"garbage\r\n\r\n",
])
def test_http_client_refuses_broken_responses(payload):
    async def go():
        server, url = await _raw_server(payload)
        async with server:
            await http_request("GET", url, {})

    with pytest.raises(tablesource.HttpError):
        run(go())


def test_http_client_refuses_other_schemes():
    with pytest.raises(tablesource.HttpError):
        run(http_request("GET", "ftp://127.0.0.1/x", {}))


def test_poll_times_out_on_a_silent_server(monkeypatch):
    monkeypatch.setattr(tablesource, "HTTP_TIMEOUT", 0.2)

    async def go():
        async def handle(reader, writer):
            await asyncio.sleep(5)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            src = TableSource(control_plane=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            await src.poll_once()
            return src

    src = run(go())
    assert not src.source_ok and "TimeoutError" in src.last_error


# -- file ----------------------------------------------------------------------------------------------

def test_table_file(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table(5)))
    src = TableSource(table_file=str(path))
    run(src.start())
    assert src.current.version == 5 and src.source_ok and not src._tasks


@pytest.mark.parametrize("content", ["{", json.dumps(table(5, fmt=99))])
def test_a_bad_table_file_stops_the_start(tmp_path, content):
    path = tmp_path / "table.json"
    path.write_text(content)
    with pytest.raises((ValueError, TableError)):
        run(TableSource(table_file=str(path)).start())


# -- reports ---------------------------------------------------------------------------------------------

def test_report_once(plane):
    src = source(plane, stats=lambda: {"requests": 12, "in_flight": 1}, address="10.0.0.9:8080")

    async def go():
        await src.poll_once()
        return await src.report_once()

    assert run(go()) is True
    (report,) = plane.reports
    assert set(report) == {"replica_id", "address", "table_version", "started_at", "stats", "trips"}
    assert report["trips"] == []  # no guard has tripped
    assert report["replica_id"] == "test-replica" and report["address"] == "10.0.0.9:8080"
    assert report["table_version"] == 1 and isinstance(report["started_at"], float)
    assert report["stats"]["requests"] == 12 and report["stats"]["table_source"]["ok"] is True
    post = [h for m, p, h in plane.requests if m == "POST"][0]
    assert post["Authorization"] == f"Bearer {KEY}" and post["Content-Type"] == "application/json"


def test_report_failures_are_only_logged(plane):
    src = source(plane)
    plane.report_status = 500
    assert run(src.report_once()) is False
    plane.close()
    assert run(src.report_once()) is False


def test_stats_that_the_control_plane_would_refuse_are_left_out(plane):
    for stats in (lambda: {"x": "y" * 5000}, lambda: {"x": float("nan")}, lambda: 1 / 0):
        src = source(plane, stats=stats)
        report = src.report()
        assert set(report["stats"]) == {"table_source", "stats_error"}
        json.dumps(report, allow_nan=False)


def test_default_replica_id_is_what_the_control_plane_accepts():
    import re

    rid = TableSource(control_plane="http://127.0.0.1:9").replica_id
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", rid) and str(os.getpid()) in rid


def test_reports_periodically_and_right_after_a_swap(plane):
    src = source(plane, poll_interval=0.05, report_interval=30)

    async def go():
        await src.start()
        try:
            await eventually(lambda: any(r["table_version"] == 1 for r in plane.reports))
            plane.table = table(2)
            await eventually(lambda: any(r["table_version"] == 2 for r in plane.reports), timeout=3)
        finally:
            await src.stop()

    run(go())


TRIP = {"endpoint": "vision.fraud-scorer", "variant": "green", "version": 3, "errors": 10, "requests": 10,
        "error_ratio": 1.0, "tripped_at": 1_764_600_000.5}


def test_report_soon_posts_the_trips_at_once_not_at_the_next_interval(plane):
    trips = []
    src = source(plane, poll_interval=0.05, report_interval=30, trips=lambda: trips)

    async def go():
        await src.start()
        try:
            await eventually(lambda: any(r["table_version"] == 1 for r in plane.reports))
            trips.append(TRIP)
            src.report_soon()  # what the gateway calls when a guard trips
            await eventually(lambda: any(r["trips"] == [TRIP] for r in plane.reports), timeout=3)
        finally:
            await src.stop()

    run(go())


def test_a_report_carries_at_most_the_newest_trips_the_control_plane_takes():
    many_trips = [TRIP | {"variant": f"v{i}", "tripped_at": 1_764_600_000.0 + i} for i in range(40)]
    src = TableSource(control_plane="http://127.0.0.1:9", trips=lambda: many_trips)
    assert src.report()["trips"] == many_trips[-tablesource.MAX_TRIPS:]


# -- Redis -----------------------------------------------------------------------------------------------

@pytest.fixture
def redis_names():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"these tests need Redis at {REDIS_URL} (scripts/test starts it)")
    prefix = f"switchyard-test:{uuid.uuid4().hex}"
    names = {"channel": f"{prefix}:routing-table", "redis_key": f"{prefix}:routing-table"}
    yield client, names
    client.delete(names["redis_key"])
    client.close()


def test_redis_push_and_catch_up_on_subscribe(plane, redis_names):
    client, names = redis_names
    client.set(names["redis_key"], json.dumps(table(3)))
    plane.status = 500  # only Redis works
    src = source(plane, redis_url=REDIS_URL, report_interval=30, **names)

    async def go():
        await src.start()
        try:
            await eventually(lambda: src.current.version == 3)  # from the key, right after subscribing
            await eventually(lambda: src.redis_ok)
            assert src.source_ok  # the poll fails, Redis works
            client.publish(names["channel"], json.dumps(table(4)))
            await eventually(lambda: src.current.version == 4)
            client.publish(names["channel"], json.dumps(table(2)))  # an older push never moves back
            client.publish(names["channel"], json.dumps(table(5, fmt=9)))  # refused
            client.publish(names["channel"], json.dumps(table(6)))
            await eventually(lambda: src.current.version == 6)
        finally:
            await src.stop()

    run(go())


def test_redis_notification_without_a_table_triggers_a_poll(plane, redis_names):
    client, names = redis_names
    src = source(plane, redis_url=REDIS_URL, report_interval=30, **names)  # poll every 10 s with Redis up

    async def go():
        await src.start()
        try:
            await eventually(lambda: src.current.version == 1 and src.redis_ok)
            await asyncio.sleep(0.1)
            plane.table = table(2)
            client.publish(names["channel"], "2")
            await eventually(lambda: src.current.version == 2, timeout=3)
        finally:
            await src.stop()

    run(go())


def test_redis_down_falls_back_to_fast_polling(plane):
    src = source(plane, redis_url="redis://127.0.0.1:9/13", report_interval=30)

    async def go():
        await src.start()
        try:
            await eventually(lambda: src.current.version == 1)
            plane.table = table(2)
            await eventually(lambda: src.current.version == 2, timeout=3)  # 1 s polls, not 10 s
            assert not src.redis_ok and src.source_ok and "redis" in src.last_error
        finally:
            await src.stop()

    run(go())


class RedisProxy:
    """A TCP proxy in front of the real Redis that can cut every connection and refuse new ones."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.server = None
        self.port = None
        self.writers = set()

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port or 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self):
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()


def test_redis_reconnects_and_catches_up(plane, redis_names):
    from urllib.parse import urlsplit

    client, names = redis_names
    target = urlsplit(REDIS_URL)
    plane.status = 500  # only Redis works

    async def go():
        proxy = RedisProxy(target.hostname, target.port or 6379)
        await proxy.start()
        db = target.path or "/13"
        src = source(plane, redis_url=f"redis://127.0.0.1:{proxy.port}{db}", report_interval=30, **names)
        client.set(names["redis_key"], json.dumps(table(1)))
        await src.start()
        try:
            await eventually(lambda: src.current.version == 1 and src.redis_ok)
            await proxy.cut()
            await eventually(lambda: not src.redis_ok, timeout=10)
            # Published while the replica was cut off: only the key has it.
            client.set(names["redis_key"], json.dumps(table(2)))
            client.publish(names["channel"], json.dumps(table(2)))
            await proxy.start()
            await eventually(lambda: src.current.version == 2 and src.redis_ok, timeout=15)
        finally:
            await src.stop()
            await proxy.cut()

    run(go())


def test_a_redis_blip_still_catches_up(plane, redis_names):
    """A connection that drops and comes straight back must still re-read the key: redis-py's own
    pub/sub reconnect would resubscribe silently and lose what was published in the gap."""
    from urllib.parse import urlsplit

    client, names = redis_names
    target = urlsplit(REDIS_URL)
    plane.status = 500  # only Redis works

    async def go():
        proxy = RedisProxy(target.hostname, target.port or 6379)
        await proxy.start()
        src = source(plane, redis_url=f"redis://127.0.0.1:{proxy.port}{target.path or '/13'}", report_interval=30,
                     **names)
        client.set(names["redis_key"], json.dumps(table(1)))
        await src.start()
        try:
            await eventually(lambda: src.current.version == 1 and src.redis_ok)
            await proxy.cut()
            client.set(names["redis_key"], json.dumps(table(2)))
            client.publish(names["channel"], json.dumps(table(2)))
            await proxy.start()
            await eventually(lambda: src.current.version == 2, timeout=10)
        finally:
            await src.stop()
            await proxy.cut()

    run(go())


def test_a_refused_table_shows_even_while_redis_works(plane):
    """A control plane on a newer table format: the replica keeps its table, and says it is stale."""
    src = source(plane)
    src.redis_ok = True  # as if subscribed

    async def go():
        await src.poll_once()
        assert src.source_ok
        src.offer(table(2, fmt=99), source="redis")
        assert not src.source_ok and src.current.version == 1
        plane.table = table(2, fmt=99)
        await src.poll_once()
        assert not src.source_ok
        plane.table = table(3)
        await src.poll_once()
        assert src.source_ok and src.current.version == 3

    run(go())


def test_stop_is_prompt_whatever_the_loops_are_doing(plane, redis_names):
    """Stop right after start, mid-request and mid-wait: every loop ends at once (Python 3.11's
    wait_for could swallow the cancellation and leave a loop running for its full interval)."""
    _, names = redis_names

    async def go():
        outer = asyncio.all_tasks()
        for delay in (0, 0.001, 0.005, 0.02, 0.05, 0.1) * 3:
            src = source(plane, redis_url=REDIS_URL, poll_interval=0.01, report_interval=0.01, **names)
            await src.start()
            await asyncio.sleep(delay)
            started = time.monotonic()
            await src.stop()
            assert time.monotonic() - started < 1.0
            left = [t for t in asyncio.all_tasks() - outer if not t.done()]
            assert not left, left

    run(go())
