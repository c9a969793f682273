"""Keep-alive connection pools to the upstream Triton servers.

One `Pool` per server per worker holds idle HTTP/1.1 connections (asyncio Protocols fed to
httptools' response parser), bounded in number; a request past the bound waits for a connection
to come back. `Upstreams` owns the pools, the outstanding-request counts that least-outstanding
picks from, and one sweeper task that aborts requests past their deadline (no timer per request).

The failure that matters most is told apart by type: `NotSent` means no byte of the request
reached a socket (connect refused, reset or timed out), so it is safe to send elsewhere;
`UpstreamFailed` means it was written and may have run, so it is never retried.
"""
from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import urlsplit

import httptools

from gateway.table import Server

DEFAULT_POOL_SIZE = 256
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_REQUEST_TIMEOUT = 30.0


class UpstreamError(Exception):
    pass


class NotSent(UpstreamError):
    """No byte of the request was written: it can go to another server."""


class UpstreamFailed(UpstreamError):
    """The request was written but no complete response came back (Triton may have run it)."""


class Unanswered(UpstreamFailed):
    """The request was written, then the connection closed before a single byte of an answer:
    the server died or had just closed a kept-alive connection. Inference through the gateway is
    stateless (a sequence model, whose requests must all reach one server, cannot be served
    through it), so running it again elsewhere is safe, and the proxy retries it."""


class UpstreamTimeout(UpstreamError):
    """No complete response within the request timeout."""


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list, body: bytes):
        self.status = status
        self.headers = headers  # [(name bytes, value bytes)] as received
        self.body = body


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "body",
        "callback",
        "closed",
        "deadline",
        "headers",
        "keep_alive",
        "parser",
        "pool",
        "received",
        "status",
        "transport",
        "waiter",
    )

    def __init__(self, pool: Pool):
        self.pool = pool
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.callback = None
        self.headers: list = []
        self.body: list = []
        self.status = 0
        self.deadline = 0.0
        self.closed = False
        self.keep_alive = True
        self.received = False  # any byte of the current request's answer

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.fail(UpstreamFailed(f"bad response from {self.pool.name}: {e}"))
            self.transport.abort()

    def eof_received(self):
        return False  # close our side too

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.received:
            self.fail(UpstreamFailed(f"{self.pool.name} closed the connection in the middle of its answer"))
        else:
            self.fail(Unanswered(f"{self.pool.name} closed the connection before answering"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body = self.body
        response = Response(self.status, self.headers, body[0] if len(body) == 1 else b"".join(body))
        self.headers = []
        self.body = []
        keep = self.parser.should_keep_alive()
        self.pool.busy.discard(self)
        callback, self.callback = self.callback, None
        if callback is not None:
            # Back to the pool first: the callback may send the connection's next request at once.
            if keep and not self.closed and not self.pool.retired:
                self.pool.release(self)
            else:
                self.transport.close()
            callback(response, None)
            return
        if waiter is None or waiter.done():
            # An answer nobody waits for (timed out): this connection is no longer in step.
            self.transport.abort()
            return
        waiter.set_result(response)
        if keep and not self.closed and not self.pool.retired:
            self.pool.release(self)
        else:
            self.transport.close()

    # -- use
    def send(self, head: bytes, body: bytes, deadline: float) -> asyncio.Future:
        self.received = False
        self.waiter = waiter = self.pool.loop.create_future()
        self._write(head, body, deadline)
        return waiter

    def send_then(self, head: bytes, body: bytes, deadline: float, callback) -> None:
        """Like send(), but `callback(response, None)` or `callback(None, error)` runs when it is
        over, straight from the protocol: no future, no task (the proxy's fast path)."""
        self.received = False
        self.callback = callback
        self._write(head, body, deadline)

    def _write(self, head: bytes, body: bytes, deadline: float) -> None:
        self.deadline = deadline
        self.pool.busy.add(self)
        if body and len(body) > 65536:
            self.transport.write(head)  # no copy of a large body
            self.transport.write(body)
        else:
            self.transport.write(head + body if body else head)

    def fail(self, error: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        callback, self.callback = self.callback, None
        self.pool.busy.discard(self)
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if callback is not None:
            callback(None, error)


class Pool:
    """Idle keep-alive connections to one server, at most `limit` connections in all."""

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop, *, limit: int, connect_timeout: float):
        parts = urlsplit(server.url)
        self.server_id = server.id
        self.name = server.name
        self.url = server.url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = parts.scheme == "https" or None
        self.prefix = parts.path.rstrip("/").encode()  # a server URL may carry a path prefix
        self.host_header = (parts.netloc).encode()
        self.loop = loop
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.idle: list[UpstreamConnection] = []
        self.busy: set[UpstreamConnection] = set()
        self.count = 0
        self.waiters: deque[asyncio.Future] = deque()
        self.retired = False

    def idle_connection(self) -> UpstreamConnection | None:
        """An idle connection that still looks open, without awaiting anything (the fast path)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
        return None

    async def acquire(self) -> UpstreamConnection:
        conn = self.idle_connection()
        if conn is not None:
            return conn
        while self.count >= self.limit:
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            conn = await waiter
            if conn is not None and not conn.closed:
                return conn
        self.count += 1
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port, ssl=self.ssl),
                self.connect_timeout,
            )
        except (TimeoutError, OSError) as e:
            self.count -= 1
            self._wake(None)
            raise NotSent(f"cannot connect to {self.name} ({self.url}): {e or type(e).__name__}") from None
        except BaseException:
            self.count -= 1
            self._wake(None)
            raise
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        if self.waiters:
            self._wake(conn)
        else:
            self.idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        self.count -= 1
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        self._wake(None)  # a waiter may now open a connection of its own

    def _wake(self, conn: UpstreamConnection | None) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self.idle.append(conn)

    def retire(self) -> None:
        """Close the idle connections; busy ones close after their answer (a table that moves a
        server must not fail the requests already on their way to it)."""
        self.retired = True
        for conn in list(self.idle):
            conn.transport.close()
        self.idle.clear()

    def close(self) -> None:
        self.retire()
        for conn in list(self.busy):
            conn.transport.close()


class Upstreams:
    """Every server's pool, the outstanding counts, and the request deadlines."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, pool_size: int = DEFAULT_POOL_SIZE,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT):
        self.loop = loop
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.pools: dict[int, Pool] = {}
        self.outstanding: dict[int, int] = {}
        self._sweeper: asyncio.Task | None = None

    def start(self) -> None:
        self._sweeper = self.loop.create_task(self._sweep())

    def pool(self, server: Server) -> Pool:
        pool = self.pools.get(server.id)
        if pool is None or pool.url != server.url:
            if pool is not None:
                pool.retire()  # the server moved: in-flight requests finish on their own connections
            pool = self.pools[server.id] = Pool(server, self.loop, limit=self.pool_size,
                                                connect_timeout=self.connect_timeout)
        return pool

    def forget_others(self, server_ids) -> None:
        """Retire the pools of servers the table no longer lists (their busy connections finish)."""
        for sid in [sid for sid in self.pools if sid not in server_ids]:
            self.pools.pop(sid).retire()

    async def send(self, pool: Pool, head: bytes, body: bytes) -> Response:
        """Send one request on a pooled connection. Raises NotSent, UpstreamFailed or UpstreamTimeout."""
        sid = pool.server_id
        outstanding = self.outstanding
        outstanding[sid] = outstanding.get(sid, 0) + 1
        try:
            conn = pool.idle_connection() or await pool.acquire()
            return await conn.send(head, body, self.loop.time() + self.request_timeout)
        finally:
            outstanding[sid] -= 1

    async def _sweep(self) -> None:
        interval = max(0.05, min(1.0, self.request_timeout / 20))
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            for pool in list(self.pools.values()):
                for conn in [c for c in pool.busy if c.deadline < now]:
                    conn.fail(UpstreamTimeout(f"{pool.name} did not answer within {self.request_timeout:g} s"))
                    conn.transport.abort()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for pool in self.pools.values():
            pool.close()


async def probe_live(server: Server, *, timeout: float = 1.0) -> bool:
    """GET /v2/health/live on a fresh connection: 200 or not."""
    parts = urlsplit(server.url)
    prefix = parts.path.rstrip("/")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 80, ssl=parts.scheme == "https" or None), timeout)
    except (TimeoutError, OSError):
        return False
    try:
        writer.write(f"GET {prefix}/v2/health/live HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.split(b" ", 2)[1:2] == [b"200"]
    except (TimeoutError, OSError, IndexError):
        return False
    finally:
        writer.close()
