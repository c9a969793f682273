"""Where a gateway replica gets its routing table, and how it reports in.

Three sources, any of which may fail without stopping the serving of the last good table:

- HTTP poll of the control plane (`GET /api/v1/gateway/table`, conditional on the last ETag);
- Redis push (channel `switchyard:routing-table@db<N>`, see `table.redis_channel`, carrying the
  whole table), with a `GET` of the key `switchyard:routing-table` right after each subscribe, to
  cover what was published while away;
- a file, read once at start, for air-gapped use and tests.

A table replaces the current one only if its version is higher, so a late poll answer can never
undo a newer push. One exception: when the control plane's database is reset (restored from a
backup), its versions go back. A replica that ignored them would serve a dead table forever while
reporting a version high enough to pass every "all replicas serve it" check. So the same lower
version answered by `REGRESS_AFTER` consecutive polls is taken (and logged loudly); a push alone
never moves back, it only makes the poll run at once. The swap is one attribute assignment: a request holds the table object it
started with, and the next request sees the new one; nothing is mutated in place.

Every `report_interval`, right after a swap, and at once when a guard trips (`report_soon`), the
replica posts what it serves to `/api/v1/gateway/replicas/report`: the control plane counts a
traffic change as done only when every live replica reports the version that holds it. The report
also lists the guard trips in effect (gateway/guard.py), which the control plane confirms with a
rollback.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

from gateway.table import EMPTY, REDIS_KEY, RoutingTable, TableError, parse_table, redis_channel

log = logging.getLogger("gateway.tablesource")

TABLE_PATH = "/api/v1/gateway/table"
REPORT_PATH = "/api/v1/gateway/replicas/report"
POLL_INTERVAL = 1.0  # without Redis (or while Redis is down): the poll is the only way in
POLL_INTERVAL_WITH_REDIS = 10.0  # the push does the work; the poll is a safety net
REPORT_INTERVAL = 2.0
HTTP_TIMEOUT = 5.0
MAX_TABLE_BYTES = 64 * 1024 * 1024
MAX_STATS_BYTES = 4096  # the control plane's limit (controlplane/endpoints/gateway_api.py)
MAX_TRIPS = 16  # the control plane's limit too: the newest are sent
REGRESS_AFTER = 3  # consecutive polls answering the same lower version: the control plane went back

SwapCallback = Callable[[RoutingTable, RoutingTable], Any]  # (old, new)


class TableSource:
    """Holds `current` (the table to serve) and how its sources are doing.

    `source_ok` is True while some source works (a poll answered 200 or 304, Redis is subscribed,
    or the file loaded) and the newest table offered was not refused: a control plane that moved to
    a table format this replica does not read leaves it serving an old table, and that must show.
    `last_error` keeps the most recent failure.
    `on_swap` callbacks run synchronously, in the event loop, after each swap, with (old, new).
    """

    def __init__(
        self,
        *,
        control_plane: str | None = None,
        key: str | None = None,
        redis_url: str | None = None,
        table_file: str | None = None,
        poll_interval: float | None = None,
        report_interval: float = REPORT_INTERVAL,
        replica_id: str = "",
        address: str = "",
        stats: Callable[[], Mapping[str, Any]] | None = None,
        trips: Callable[[], list[dict]] | None = None,
        channel: str | None = None,
        redis_key: str = REDIS_KEY,
        clock: Callable[[], float] = time.time,
    ):
        if table_file is None and control_plane is None:
            raise ValueError("a table source needs a control plane URL or a table file")
        self.control_plane = control_plane.rstrip("/") if control_plane else None
        self.key = key
        self.redis_url = redis_url
        self.table_file = table_file
        self.poll_interval = poll_interval
        self.report_interval = report_interval
        self.replica_id = replica_id or default_replica_id()
        self.address = address
        self.stats = stats
        self.trips = trips
        self.channel = channel or (redis_channel(redis_url) if redis_url else "")
        self.redis_key = redis_key
        self.clock = clock

        self.current: RoutingTable = EMPTY
        self.source_ok = False
        self.last_ok_at = 0.0
        self.last_error = ""
        self.http_ok = False
        self.redis_ok = False
        self.started_at = clock()
        self.on_swap: list[SwapCallback] = []

        self._etag: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._poll_now = asyncio.Event()
        self._report_now = asyncio.Event()
        self._was_failing: dict[str, bool] = {}
        self._lower: tuple[int, int] | None = None  # (lower version the poll answered, times in a row)
        self._refusing = False  # the newest table offered broke the contract

    @property
    def has_table(self) -> bool:
        """The replica may serve (and say it is ready) once it holds a table."""
        return self.current is not EMPTY

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the file (raising if it is bad: a gateway started on a broken file should not run),
        or start polling, the Redis listener and the reports in the background."""
        if self.table_file is not None:
            with open(self.table_file, "rb") as f:
                data = json.loads(f.read())
            if not self.offer(data, source="file"):
                raise TableError("table", f"{self.table_file} did not give a usable table: {self.last_error}")
            self._ok("file")
        else:
            self._tasks.append(asyncio.create_task(self._poll_loop(), name="table-poll"))
            if self.redis_url:
                self._tasks.append(asyncio.create_task(self._redis_loop(), name="table-redis"))
        if self.control_plane is not None:
            self._tasks.append(asyncio.create_task(self._report_loop(), name="replica-report"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=3.0)
            for task in stuck:
                log.warning("table source task %s did not stop within 3 s", task.get_name())

    # -- swapping --------------------------------------------------------------------------------

    def offer(self, data: Any, *, source: str) -> bool:
        """Serve `data` (a decoded table) if it is valid and newer than the current table.
        Returns whether it swapped. A table that breaks the contract is refused and logged."""
        return self._offer(data, source) == "swapped"

    def _offer(self, data: Any, source: str, *, allow_lower: bool = False) -> str:
        try:
            table = parse_table(data)
        except TableError as e:
            self._refusing = True
            self._fail(source, f"refused a table from {source}: {e}")
            return "refused"
        if self._refusing:
            self._refusing = False
            self.source_ok = True  # a valid table just came from a working source
        old = self.current
        if old is not EMPTY and table.version <= old.version:
            if not (allow_lower and table.version < old.version):
                if table.version < old.version and source != "http":
                    self._poll_now.set()  # an older push: let the poll say whether the control plane went back
                return "stale"
            log.warning("routing table went back from v%d to v%d: the control plane's table was reset",
                        old.version, table.version)
        self.current = table
        log.info("serving routing table v%d (from %s)", table.version, source)
        self._report_now.set()
        for callback in list(self.on_swap):
            try:
                callback(old, table)
            except Exception:
                log.exception("on_swap callback %r failed", callback)
        return "swapped"

    # -- HTTP poll -------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """One conditional GET of the table. Never raises (except cancellation)."""
        headers = {"Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        if self._etag and self.has_table:
            headers["If-None-Match"] = self._etag
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                status, response_headers, body = await http_request("GET", self.control_plane + TABLE_PATH, headers)
        except (OSError, asyncio.TimeoutError, HttpError) as e:
            self._fail("http", f"table poll failed: {type(e).__name__}: {e}")
            return
        if status == 304:
            self._refusing = False  # the control plane still has the table served
            self._ok("http")
            return
        if status != 200:
            self._fail("http", f"table poll answered {status}: {body[:200].decode('utf-8', 'replace')}")
            return
        try:
            data = json.loads(body)
        except ValueError as e:
            self._fail("http", f"table poll answered invalid JSON: {e}")
            return
        if self._offer(data, "http", allow_lower=self._went_back(data)) == "refused":
            return  # keep the old ETag, so the next poll fetches the table again
        # The ETag stands for the table served: after an older answer, keep asking for the table.
        self._etag = response_headers.get("etag") if data.get("version") == self.current.version else None
        self._ok("http")

    def _went_back(self, data: Any) -> bool:
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, int) or not self.has_table or version >= self.current.version:
            self._lower = None
            return False
        count = self._lower[1] + 1 if self._lower and self._lower[0] == version else 1
        self._lower = (version, count)
        if count < REGRESS_AFTER:
            log.warning("the control plane answered table v%d, older than v%d (%d of %d before going back)",
                        version, self.current.version, count, REGRESS_AFTER)
            return False
        self._lower = None
        return True

    async def _poll_loop(self) -> None:
        while True:
            await self.poll_once()
            interval = self.poll_interval
            if interval is None:
                fast = not self.redis_ok or self._lower is not None
                interval = POLL_INTERVAL if fast else POLL_INTERVAL_WITH_REDIS
            await _wait(self._poll_now, interval)
            self._poll_now.clear()

    # -- Redis push ------------------------------------------------------------------------------

    async def _redis_loop(self) -> None:
        import redis.asyncio as aioredis  # only a replica configured for Redis needs it
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        backoff = 0.5
        while True:
            # No retries inside redis-py: its pub/sub reconnect resubscribes silently, and whatever
            # was published in the gap would be lost. Every reconnect goes through this loop, which
            # reads the key again after subscribing.
            client = aioredis.from_url(self.redis_url, socket_connect_timeout=HTTP_TIMEOUT, health_check_interval=15,
                                       retry=Retry(NoBackoff(), 0))
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await _own_task(pubsub.subscribe(self.channel))
                # Subscribed first, then read the key: whatever was published in between is seen twice,
                # which is harmless (an old version is ignored), rather than not at all.
                stored = await _own_task(client.get(self.redis_key))
                if stored is not None:
                    self._on_push(stored)
                self.redis_ok = True
                self._ok("redis")
                backoff = 0.5
                quiet_since = time.monotonic()
                while True:
                    message = await _own_task(pubsub.get_message(timeout=5.0))
                    if message is None:
                        if time.monotonic() - quiet_since > 30.0:
                            await _own_task(client.ping())  # a silent channel: is the connection alive?
                            quiet_since = time.monotonic()
                        continue
                    quiet_since = time.monotonic()
                    if message.get("type") == "message":
                        self._on_push(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as e:  # redis.ConnectionError, TimeoutError, OSError... keep serving
                self.redis_ok = False
                self._fail("redis", f"redis push unavailable: {type(e).__name__}: {e}")
                self._poll_now.set()  # fall back to polling at once
            finally:
                self.redis_ok = False
                # Bounded: closing may wait on a socket that is gone, and must never stall stop().
                for closable in (pubsub, client):
                    try:
                        async with asyncio.timeout(1.0):
                            await closable.aclose()
                    except Exception:
                        pass
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 10.0)

    def _on_push(self, payload: bytes | str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if isinstance(data, dict):
            self.offer(data, source="redis")
        else:
            self._poll_now.set()  # a bare notification (say, a version number): fetch the table

    # -- reporting -------------------------------------------------------------------------------

    def report_soon(self) -> None:
        """Post a report now rather than at the next interval (a guard tripped)."""
        self._report_now.set()

    def report(self) -> dict[str, Any]:
        """The report's JSON object. The control plane takes at most MAX_STATS_BYTES of stats and
        no NaN: stats that break either are replaced by the table source's own, so the version
        (what the control plane waits for) still gets through."""
        own = {
            "ok": self.source_ok,
            "http_ok": self.http_ok,
            "redis_ok": self.redis_ok if self.redis_url else None,
            "last_ok_at": self.last_ok_at,
            "last_error": self.last_error[:300],
        }
        try:
            stats = dict(self.stats()) if self.stats is not None else {}
            stats.setdefault("table_source", own)
            if len(json.dumps(stats, separators=(",", ":"), allow_nan=False)) > MAX_STATS_BYTES:
                raise ValueError(f"stats larger than {MAX_STATS_BYTES} bytes")
        except Exception as e:  # a broken stats callback must not stop the report
            self._log_change("stats", True, f"replica stats left out of the report: {type(e).__name__}: {e}")
            stats = {"table_source": own, "stats_error": f"{type(e).__name__}: {e}"[:300]}
        else:
            self._log_change("stats", False, "replica stats are back in the report")
        return {
            "replica_id": self.replica_id,
            "address": self.address,
            "table_version": self.current.version,
            "started_at": self.started_at,
            "stats": stats,
            "trips": list(self.trips())[-MAX_TRIPS:] if self.trips is not None else [],
        }

    async def report_once(self) -> bool:
        """Post one report. Failures are logged, never raised (except cancellation)."""
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        try:
            body = json.dumps(self.report(), allow_nan=False).encode()
            async with asyncio.timeout(HTTP_TIMEOUT):
                status, _, answer = await http_request("POST", self.control_plane + REPORT_PATH, headers, body)
        except Exception as e:  # including a stats callback that broke: the report must not stop
            self._log_change("report", True, f"replica report failed: {type(e).__name__}: {e}")
            return False
        ok = 200 <= status < 300
        self._log_change("report", not ok, f"replica report answered {status}: {answer[:200].decode('utf-8', 'replace')}")
        return ok

    async def _report_loop(self) -> None:
        while True:
            self._report_now.clear()
            await self.report_once()
            await _wait(self._report_now, self.report_interval)

    # -- state -----------------------------------------------------------------------------------

    def _ok(self, source: str) -> None:
        if source == "http":
            self.http_ok = True
        self.last_ok_at = self.clock()
        self.source_ok = not self._refusing
        if not self._refusing:
            self._log_change(source, False, f"table source {source} is back")

    def _fail(self, source: str, message: str) -> None:
        if source == "http":
            self.http_ok = False
        self.source_ok = (self.http_ok or self.redis_ok) and not self._refusing
        self.last_error = message
        self._log_change(source, True, message)

    def _log_change(self, source: str, failing: bool, message: str) -> None:
        # One line when a source starts or stops failing, not one a second while it is down.
        was = self._was_failing.get(source, False)
        self._was_failing[source] = failing
        if failing and not was:
            log.warning("%s", message)
        elif failing:
            log.debug("%s", message)
        elif was:
            log.info("%s", message)


async def _own_task(coro):
    """Await a redis-py call in a task of its own. redis-py (8.1) swallows a cancellation that
    arrives inside subscribe, get or get_message and carries on waiting, so cancelling the
    listener directly could leave it running; this way the listener is cancelled at once, and
    the call ends when its connection is closed (or its short timeout passes)."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # abandoned: its error is moot
        raise


async def _wait(event: asyncio.Event, timeout: float) -> None:
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
    # arrives as the inner wait finishes, and stop() would then hang on a loop that carries on.
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


def default_replica_id() -> str:
    """host:pid, in the characters the control plane accepts: one id per worker process."""
    return re.sub(r"[^A-Za-z0-9._:-]", "-", f"{socket.gethostname()}:{os.getpid()}")[:128]


# -- a minimal HTTP/1.1 client: one request per connection, which a poll a second can afford ------

class HttpError(Exception):
    pass


@dataclass
class _Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False
    headers_done: bool = False
    _name: str = ""

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk
        if len(self.body) > MAX_TABLE_BYTES:
            raise HttpError("response too large")

    def on_message_complete(self) -> None:
        self.complete = True


async def http_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """Send one request and return (status, lower-cased headers, body). Raises OSError or HttpError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    reader, writer = await asyncio.open_connection(
        parts.hostname, port, ssl=ssl.create_default_context() if tls else None
    )
    try:
        host = parts.netloc.rsplit("@", 1)[-1]
        lines = [f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
                 f"Host: {host}", "Connection: close", "User-Agent: switchyard-gateway",
                 f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

        response = _Response()
        parser = httptools.HttpResponseParser(response)
        while not response.complete:
            chunk = await reader.read(65536)
            if not chunk:
                break
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError as e:
                raise HttpError(f"bad HTTP response: {e}") from e
        if not response.complete:
            # Without Content-Length or chunking, the body runs to the end of the connection.
            if not response.headers_done or "content-length" in response.headers or "chunked" in response.headers.get("transfer-encoding", ""):
                raise HttpError("connection closed before the response was complete")
        return parser.get_status_code(), response.headers, bytes(response.body)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except Exception:
            pass
