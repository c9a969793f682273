"""The client side: an HTTP/1.1 server Protocol on httptools that routes Triton's v2 API.

One `ClientConnection` per client connection parses requests with httptools, buffers each body
(it may be retried on another server before any byte left, and copied to a shadow) without ever
parsing it, and answers pipelined requests strictly in order: one request per connection is
being answered at a time, the rest wait in a queue. Local answers (health, errors, metrics) are
written synchronously. A proxied request that finds an idle upstream connection is sent at once
and answered from a callback (the fast path, no task); otherwise it becomes one task, which may
connect, wait for a free connection and retry what was never sent.

Retry rule: only a request no byte of which reached a socket (connect refused, reset or timed out)
goes to another server of the same variant, at most once per server; a request that was written
is never sent again (Triton may have run it): a drop is a 502, no answer in time a 504.

`Gateway` holds one worker's state and makes the routing decisions with gateway.routing and
gateway.access. Every request keeps the table object it started with, so a table switch never
changes a request halfway.

Guards (gateway/guard.py): every answer of a variant whose table entry carries a guard is counted,
a 5xx (Triton's, or this gateway's 502, 503 or 504 for it) as an error; once the guard trips, the
variant gets no more weighted or sticky traffic, and the replica reports the trip at once. Requests
already sent are not moved: the retry rule above is the only one.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from http import HTTPStatus

import httptools

from gateway import metrics as metrics_mod
from gateway.access import check_access
from gateway.guard import Guards, Trip
from gateway.routing import (
    RouteError,
    is_refused_path,
    least_outstanding,
    parse_model_path,
    select_variant,
    upstream_path,
)
from gateway.table import Endpoint, RoutingTable, Variant
from gateway.upstream import NotSent, Unanswered, UpstreamFailed, UpstreamTimeout

log = logging.getLogger("gateway.proxy")

try:
    from importlib.metadata import version as _dist_version

    VERSION = _dist_version("switchyard")
except Exception:  # noqa: BLE001 (not installed as a distribution: a source checkout)
    VERSION = "0.1.0"

DEFAULT_MAX_BODY = 64 * 1024 * 1024
MAX_PIPELINE = 64  # queued requests per connection before we stop reading from it
LINGER = 2.0  # seconds a refused connection keeps draining what the client sends
MAX_HEAD = 64 * 1024  # request line, and all headers together (nginx allows 4 x 8 kB by default)
DEFAULT_KEEPALIVE_TIMEOUT = 75.0  # seconds an idle client connection stays open (nginx's default)

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the gateway sets itself; Authorization is the
# client's credential for the gateway and never goes to Triton.
_DROP_REQUEST = frozenset([
    b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"host",
    b"authorization", b"content-length", b"expect", b"x-switchyard-variant",
])
_DROP_RESPONSE = frozenset([
    b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"content-length",
])

_REFUSED = (
    ("/v2/repository", "the repository API is not available through the gateway"),
    ("/v2/systemsharedmemory", "the shared-memory API is not available through the gateway"),
    ("/v2/cudasharedmemory", "the shared-memory API is not available through the gateway"),
    ("/v2/trace", "the trace API is not available through the gateway"),
    ("/v2/logging", "the logging API is not available through the gateway"),
)

INTERNAL_SNAPSHOT = "/internal/metrics-snapshot"
_CACHE_SIZE = 4096
_MISSING = object()
_NOT_A_MODEL_ROUTE = object()


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
    return line


def _json_response(status: int, payload, keep_alive: bool, extra: bytes = b"") -> bytes:
    body = json.dumps(payload).encode()
    return b"%sContent-Type: application/json\r\nContent-Length: %d\r\n%s%s\r\n%s" % (
        _status_line(status), len(body), extra, b"" if keep_alive else b"Connection: close\r\n", body)


def _error(status: int, message: str, keep_alive: bool, extra: bytes = b"") -> bytes:
    return _json_response(status, {"error": message}, keep_alive, extra)


def _refusal(path: str) -> str:
    for prefix, message in _REFUSED:
        if path == prefix or path.startswith(prefix + "/"):
            return message
    return "this Triton API is not available through the gateway"


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a connection that has been refused."""


class Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "started", "url")

    def __init__(self, method: bytes, url: bytes, headers: list, body: bytes, keep_alive: bool, started: float):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.started = started


class Gateway:
    """One worker's state: the table source, the upstream pools, health, shadow and metrics."""

    def __init__(self, loop, *, source, upstreams, health, shadower, metrics, max_body: int = DEFAULT_MAX_BODY,
                 collect_metrics=None):
        self.loop = loop
        self.source = source  # anything with .current (a RoutingTable) and .source_ok
        self.upstreams = upstreams
        self.health = health
        self.shadower = shadower
        self.metrics = metrics
        self.max_body = max_body
        self.collect_metrics = collect_metrics  # async () -> list of other workers' snapshots
        self.connections: set[ClientConnection] = set()
        self.closing = False
        self._variant_headers: dict[tuple[str, int], bytes] = {}
        self._sticky_names: dict[str, bytes] = {}
        self._routes: dict[str, object] = {}
        self._upstream_paths: dict[tuple[str, int, str], bytes] = {}
        self.guards = Guards()

    # -- guards
    def table_swapped(self, old: RoutingTable, new: RoutingTable) -> None:
        """Follow a new table (TableSource's on_swap): trips of guards it no longer has end."""
        for trip in self.guards.sync(new, self.loop.time()):
            log.warning("guard of %s variant %s (version %d) reset by table v%d", trip.endpoint, trip.variant,
                        trip.version, new.version)

    def guard_answer(self, endpoint: str, variant: Variant, status: int) -> None:
        """Count one answer of a guarded variant; on a trip, count it and report at once."""
        trip = self.guards.observe(endpoint, variant.name, variant.version, variant.guard, status >= 500,
                                   self.loop.time(), time.time())
        if trip is not None:
            self._tripped(trip)

    def _tripped(self, trip: Trip) -> None:
        self.metrics.guard_trip(trip.endpoint, trip.variant)
        log.warning("guard of %s variant %s (version %d) tripped: %d errors in %d answers; it gets no more "
                    "weighted traffic", trip.endpoint, trip.variant, trip.version, trip.errors, trip.requests)
        report_soon = getattr(self.source, "report_soon", None)
        if report_soon is not None:
            report_soon()

    # -- metrics
    def snapshot(self) -> dict:
        m = self.metrics
        table = self.source.current
        m.table_version = table.version
        m.table_generated_at = table.generated_at
        m.source_up = 1 if self.source.source_ok else 0
        guards = self.guards
        m.guard_tripped = {(endpoint, name): 0 for endpoint, name, _, _ in guards.windows}
        m.guard_tripped.update({(endpoint, name): 1 for endpoint, name, _, _ in guards.trips})
        return m.snapshot()

    async def metrics_page(self) -> bytes:
        snaps = [self.snapshot()]
        if self.collect_metrics is not None:
            snaps += await self.collect_metrics()
        return metrics_mod.render(metrics_mod.merge(snaps))

    # Clients repeat the same few paths: the parse and the rewrite are cached per worker (bounded;
    # both are pure functions of their keys).
    def model_route(self, path: str):
        """parse_model_path(path), or _NOT_A_MODEL_ROUTE for a refused admin path."""
        cache = self._routes
        route = cache.get(path, _MISSING)
        if route is _MISSING:
            route = _NOT_A_MODEL_ROUTE if is_refused_path(path) else parse_model_path(path)
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[path] = route
        return route

    def upstream_path(self, model: str, version: int, action: str) -> bytes:
        key = (model, version, action)
        cache = self._upstream_paths
        value = cache.get(key)
        if value is None:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            value = cache[key] = upstream_path(model, version, action).encode()
        return value

    def variant_headers(self, name: str, version: int) -> bytes:
        key = (name, version)
        value = self._variant_headers.get(key)
        if value is None:
            value = self._variant_headers[key] = b"X-Switchyard-Variant: %s\r\nX-Switchyard-Version: %d\r\n" % (
                name.encode(), version)
        return value

    def sticky_name(self, endpoint: Endpoint) -> bytes | None:
        if endpoint.sticky_header is None:
            return None
        value = self._sticky_names.get(endpoint.sticky_header)
        if value is None:
            value = self._sticky_names[endpoint.sticky_header] = endpoint.sticky_header.lower().encode()
        return value

    def close_idle(self) -> None:
        self.closing = True
        for conn in list(self.connections):
            conn.close_if_idle()

    async def sweep_idle(self, timeout: float) -> None:
        """Close client connections idle (or stuck mid-request-head) for `timeout` seconds; one
        task for all, instead of a timer per connection."""
        while True:
            await asyncio.sleep(max(0.05, min(5.0, timeout / 4)))
            cutoff = self.loop.time() - timeout
            for conn in [c for c in self.connections if c.last_active < cutoff and not c.busy and not c.queue]:
                if conn.transport is not None:
                    conn.transport.close()


class ClientConnection(asyncio.Protocol):
    """One client connection: parse, queue in order, answer."""

    __slots__ = (
        "body",
        "body_size",
        "busy",
        "closed",
        "content_length",
        "expect_continue",
        "gw",
        "head_size",
        "headers",
        "internal",
        "last_active",
        "parser",
        "pending",
        "queue",
        "too_large",
        "transport",
        "upstream_done",
        "url",
    )

    def __init__(self, gw: Gateway, internal: bool = False):
        self.gw = gw
        self.internal = internal
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list = []
        self.head_size = 0
        self.last_active = 0.0
        self.body: list = []
        self.body_size = 0
        self.too_large = False
        self.content_length = -1
        self.expect_continue = False
        self.queue: deque[Request] = deque()
        self.busy = False
        self.closed = False
        self.pending: tuple | None = None  # the request on the fast path, while Triton answers it
        self.upstream_done = self._upstream_done  # bound once, not per request

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.last_active = self.gw.loop.time()
        self.gw.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.gw.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.gw.loop.time()
        if self.too_large:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(_error(400, "protocol upgrades are not supported", False))
        except httptools.HttpParserError as e:
            # (also what a callback's _Refused turns into; the refusal is already queued)
            if not self.too_large:
                self._refuse(_error(400, f"malformed HTTP request: {e}", False))

    def close_if_idle(self) -> None:
        if not self.busy and not self.queue and self.transport is not None:
            self.transport.close()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.body = []
        self.body_size = 0
        self.content_length = -1
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_HEAD:
            self._refuse(_error(414, f"request line longer than {MAX_HEAD} bytes", False))
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD:
            self._refuse(_error(431, f"request headers larger than {MAX_HEAD} bytes", False))
            raise _Refused
        if len(name) == 14 and name.lower() == b"content-length":
            try:
                self.content_length = int(value)
            except ValueError:
                pass
        elif len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        if self.content_length > self.gw.max_body:
            self._too_large()
        elif self.expect_continue and not self.busy and not self.queue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.too_large:
            return
        self.body_size += len(body)
        if self.body_size > self.gw.max_body:
            self._too_large()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.too_large:
            return
        body = self.body
        request = Request(self.parser.get_method(), self.url, self.headers,
                          body[0] if len(body) == 1 else b"".join(body), self.parser.should_keep_alive(),
                          self.gw.loop.time())
        self.body = []
        if self.busy or self.queue:
            self.queue.append(request)
            if len(self.queue) > MAX_PIPELINE:
                self.transport.pause_reading()
        else:
            self._dispatch(request)

    # -- answering
    def _too_large(self) -> None:
        """413 as soon as the size is known to be too big. The rest of the body is never
        buffered: the connection is answered, then closes (see _answer_now)."""
        self._refuse(_error(413, f"request body larger than the gateway's limit of {self.gw.max_body} bytes", False))

    def _refuse(self, response: bytes) -> None:
        """The last answer on this connection: nothing more is read; earlier pipelined requests
        are answered first."""
        self.too_large = True
        if self.busy or self.queue:
            self.queue.append(Request(b"", b"", [], response, False, 0.0))  # answered in its turn
        else:
            self._answer_now(response)

    def _answer_now(self, response: bytes) -> None:
        """Answer and close. Like nginx's lingering close, the write side shuts first and what the
        client still sends is read and dropped for up to LINGER seconds: closing a socket with
        unread data resets it, and the client, busy sending its body, would never see the answer."""
        self.too_large = True  # from now on data_received drops everything
        if self.closed:
            return
        transport = self.transport
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
            transport.resume_reading()
            self.gw.loop.call_later(LINGER, transport.close)
        else:
            transport.close()

    def _dispatch(self, request: Request) -> None:
        """Answer requests in order until one needs the network; that one continues in a task."""
        while True:
            if not request.method:  # a queued refusal (413 or 400): the last answer
                self._answer_now(request.body)
                return
            response = self.gw_handle(request)
            if response is not None:
                if request.method == b"HEAD":  # the same head, no body
                    response = response[:response.find(b"\r\n\r\n") + 4]
                self._write(response, request.keep_alive)
                if self.closed or not request.keep_alive:
                    return
                if not self.queue:
                    return
                request = self.queue.popleft()
                continue
            return  # a task took over; it calls _next() when done

    def _write(self, response: bytes, keep_alive: bool) -> None:
        if self.closed:
            return
        self.transport.write(response)
        if not keep_alive:
            self.transport.close()

    def _next(self) -> None:
        self.busy = False
        if self.closed:
            return
        if self.queue:
            if len(self.queue) <= MAX_PIPELINE:
                self.transport.resume_reading()
            self._dispatch(self.queue.popleft())
        elif self.gw.closing:
            self.transport.close()

    # -- routing
    def gw_handle(self, request: Request) -> bytes | None:
        """The whole answer as bytes, or None when a task now answers it."""
        gw = self.gw
        if gw.closing:
            request.keep_alive = False
        url = request.url
        q = url.find(b"?")
        path = (url if q < 0 else url[:q]).decode("latin-1")
        keep = request.keep_alive
        if path.startswith("/v2/models/"):
            model = gw.model_route(path)
        else:
            model = _NOT_A_MODEL_ROUTE
        if model is not _NOT_A_MODEL_ROUTE:
            if model is None:
                return _error(404, f"unknown path {path}", keep)
            if request.method not in (b"GET", b"POST"):
                # Triton's model routes are GET and POST only; a HEAD answer would also leave the
                # upstream parser waiting for a body that never comes.
                return _error(405, f"method {request.method.decode()} is not allowed on {path}", keep,
                              b"Allow: GET, POST\r\n")
            return self._model_request(request, model, path)
        method = request.method
        if path == "/v2/health/live" and method in (b"GET", b"HEAD"):
            return b"%sContent-Length: 0\r\n%s\r\n" % (_status_line(200), b"" if keep else b"Connection: close\r\n")
        if path in ("/v2/health/ready", "/v2") and method in (b"GET", b"HEAD"):
            ready = gw.source.current.version > 0
            if path == "/v2":
                payload = {"name": "switchyard-gateway", "version": VERSION, "extensions": []}
                if ready:
                    return _json_response(200, payload, keep)
                return _error(503, "the gateway has no routing table yet", keep)
            if ready:
                return b"%sContent-Length: 0\r\n%s\r\n" % (_status_line(200), b"" if keep else b"Connection: close\r\n")
            return _error(503, "the gateway has no routing table yet", keep)
        if path == "/metrics" and method == b"GET":
            self._start(self._metrics(request))
            return None
        if path == INTERNAL_SNAPSHOT and self.internal:
            return _json_response(200, gw.snapshot(), keep)
        if is_refused_path(path):
            return _error(403, _refusal(path), keep)
        return _error(404, f"unknown path {path}", keep)

    def _start(self, coro) -> None:
        self.busy = True
        self.gw.loop.create_task(coro)

    async def _metrics(self, request: Request) -> None:
        try:
            body = await self.gw.metrics_page()
            keep = request.keep_alive
            self._write(b"%sContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %d\r\n%s\r\n%s" % (
                _status_line(200), len(body), b"" if keep else b"Connection: close\r\n", body), keep)
        finally:
            self._next()

    def _model_request(self, request: Request, model, path: str) -> bytes | None:
        gw = self.gw
        keep = request.keep_alive
        table = gw.source.current
        if table.version == 0:
            return _error(503, "the gateway has no routing table yet", keep)
        endpoint = table.endpoints.get(model.name)
        if endpoint is None:
            return _error(404, f"Request for unknown model: '{model.name}' is not found", keep)

        sticky_name = gw.sticky_name(endpoint)
        cookie_name = endpoint.sticky_cookie
        authorization = explicit = sticky = cookie = None
        forwarded = []
        add = forwarded.append
        for name, value in request.headers:
            lname = name.lower()
            if lname in _DROP_REQUEST or lname.startswith(b"proxy-"):
                if lname == b"authorization":
                    authorization = value.decode("latin-1")
                elif lname == b"x-switchyard-variant":
                    explicit = value.decode("latin-1").strip()
                continue
            if lname == sticky_name:
                sticky = value.decode("latin-1")
            elif cookie_name is not None and lname == b"cookie":
                cookie = value.decode("latin-1")
            add(name)
            add(b": ")
            add(value)
            add(b"\r\n")

        caller = check_access(endpoint, table.tokens, authorization, time.time())
        if not caller.may_infer:
            gw.metrics.request(endpoint.name, "", "", "", caller.status, 0.0)
            extra = b'WWW-Authenticate: Bearer realm="switchyard"\r\n' if caller.status == 401 else b""
            return _error(caller.status, caller.reason, keep, extra)
        if cookie is not None:
            sticky = _cookie_value(cookie, cookie_name)
        rand = random.random()
        tripped = gw.guards.tripped
        try:
            variant = select_variant(endpoint, version=model.version, sticky_key=sticky or None,
                                     explicit_variant=explicit if caller.may_choose_variant and explicit else None,
                                     rand=rand, tripped=tripped.get(endpoint.name, ()) if tripped else ())
        except RouteError as e:
            gw.metrics.request(endpoint.name, "", "", "", e.status, 0.0)
            return _error(e.status, e.message, keep)
        if not variant.servers:
            gw.metrics.request(endpoint.name, variant.name, str(variant.version), "", 503, 0.0)
            return _error(503, f"endpoint '{endpoint.name}' variant '{variant.name}' has no ready server", keep,
                          gw.variant_headers(variant.name, variant.version))
        # A fresh draw for the server: the one that chose the variant lies in the variant's slice.
        server_rand = random.random()
        forwarded_bytes = b"".join(forwarded)
        self.busy = True
        if not self._proxy_now(request, table, endpoint, variant, model.action, forwarded_bytes, server_rand):
            self._start(self._proxy(request, table, endpoint, variant, model.action, forwarded_bytes, server_rand))
        return None

    async def _proxy(self, request: Request, table: RoutingTable, endpoint: Endpoint, variant, action: str,
                     forwarded: bytes, rand: float, tried: set[int] | None = None,
                     error: Exception | None = None) -> None:
        """Send to the least-outstanding server of the variant; a request that was never sent, or
        that a server dropped without answering a byte, goes to the next one (each server once).
        `tried` and `error`: what the fast path already tried."""
        gw = self.gw
        metrics = gw.metrics
        metrics.in_flight += 1
        keep = request.keep_alive
        status = 502
        server_name = ""
        vheaders = gw.variant_headers(variant.name, variant.version)
        try:
            upath = gw.upstream_path(variant.model, variant.version, action)
            excluded = gw.health.excluded(table)
            response = None
            second_chance = True
            for _ in range(len(variant.servers) + 1):
                sid = least_outstanding(variant.servers, gw.upstreams.outstanding,
                                        excluded if tried is None else excluded | tried, rand)
                if sid is None and second_chance and isinstance(error, Unanswered):
                    # Every server was tried, the last one dropped the request unanswered, and is not
                    # ejected: it may have closed a kept-alive connection just as the request left.
                    # One more try, on another (or a new) connection.
                    second_chance, tried = False, None
                    sid = least_outstanding(variant.servers, gw.upstreams.outstanding, excluded, rand)
                if sid is None:
                    break
                server = table.servers[sid]
                pool = gw.upstreams.pool(server)
                head = b"%s %s%s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n" % (
                    request.method, pool.prefix, upath, pool.host_header, forwarded, len(request.body))
                try:
                    response = await gw.upstreams.send(pool, head, request.body)
                except (NotSent, Unanswered) as e:
                    gw.health.failure(server)
                    tried = {sid} if tried is None else tried | {sid}
                    error = e
                    excluded = gw.health.excluded(table)
                    continue
                except UpstreamTimeout as e:
                    server_name = server.name
                    status = 504
                    error = e
                    break
                except UpstreamFailed as e:
                    gw.health.failure(server)
                    server_name = server.name
                    error = e
                    break
                gw.health.success(sid)
                server_name = server.name
                break

            if response is None:
                if error is None:
                    status = 503
                    message = f"endpoint '{endpoint.name}' variant '{variant.name}' has no ready server"
                else:
                    message = f"endpoint '{endpoint.name}' variant '{variant.name}': {error}"
                self._write(_error(status, message, keep, vheaders), keep)
                return

            status = self._respond(request, table, endpoint, variant, action, forwarded, response, vheaders)
        finally:
            metrics.in_flight -= 1
            metrics.request(endpoint.name, variant.name, str(variant.version), server_name, status,
                            gw.loop.time() - request.started)
            if variant.guard is not None:
                gw.guard_answer(endpoint.name, variant, status)
            self._next()

    def _respond(self, request: Request, table: RoutingTable, endpoint: Endpoint, variant, action: str,
                 forwarded: bytes, response, vheaders: bytes) -> int:
        """Write Triton's answer (status, headers less hop-by-hop ones, body byte for byte) with the
        variant's headers; then maybe mirror the request to the shadow. Returns the status."""
        keep = request.keep_alive
        status = response.status
        parts = [_status_line(status)]
        add = parts.append
        for name, value in response.headers:
            if name.lower() in _DROP_RESPONSE:
                continue
            add(name)
            add(b": ")
            add(value)
            add(b"\r\n")
        add(vheaders)
        add(b"Content-Length: %d\r\n" % len(response.body))
        if not keep:
            add(b"Connection: close\r\n")
        add(b"\r\n")
        body = response.body
        if len(body) > 65536:
            self._write(b"".join(parts), True)
            self._write(body, keep)
        else:
            add(body)
            self._write(b"".join(parts), keep)

        shadow = endpoint.shadow
        if (shadow is not None and status == 200 and action == "infer" and shadow.percent > 0
                and random.random() * 100.0 < shadow.percent):
            self.gw.shadower.mirror(table, endpoint, variant, request.method, forwarded, request.body, status,
                                    response.headers, body, random.random())
        return status

    # The fast path: an idle pooled connection to the chosen server sends at once, and its answer
    # comes back through a plain callback, with no task or future. Anything else (no idle
    # connection, a connect, a retry) takes the _proxy coroutine above.
    def _proxy_now(self, request: Request, table: RoutingTable, endpoint: Endpoint, variant, action: str,
                   forwarded: bytes, rand: float) -> bool:
        gw = self.gw
        upstreams = gw.upstreams
        sid = least_outstanding(variant.servers, upstreams.outstanding, gw.health.excluded(table), rand)
        if sid is None:
            return False
        server = table.servers[sid]
        pool = upstreams.pool(server)
        conn = pool.idle_connection()
        if conn is None:
            return False
        gw.metrics.in_flight += 1
        outstanding = upstreams.outstanding
        outstanding[sid] = outstanding.get(sid, 0) + 1
        self.pending = (request, table, endpoint, variant, action, forwarded, server)
        head = b"%s %s%s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n" % (
            request.method, pool.prefix, gw.upstream_path(variant.model, variant.version, action), pool.host_header,
            forwarded, len(request.body))
        conn.send_then(head, request.body, gw.loop.time() + upstreams.request_timeout, self.upstream_done)
        return True

    def _upstream_done(self, response, error) -> None:
        request, table, endpoint, variant, action, forwarded, server = self.pending
        self.pending = None
        gw = self.gw
        metrics = gw.metrics
        gw.upstreams.outstanding[server.id] -= 1
        metrics.in_flight -= 1
        status = 502
        retried = False
        vheaders = gw.variant_headers(variant.name, variant.version)
        try:
            if error is None:
                gw.health.success(server.id)
                status = self._respond(request, table, endpoint, variant, action, forwarded, response, vheaders)
            elif isinstance(error, Unanswered):
                # Dropped without a byte of answer (a dead server, or a kept-alive connection it
                # had just closed): another server of the variant takes it.
                gw.health.failure(server)
                self._start(self._proxy(request, table, endpoint, variant, action, forwarded, random.random(),
                                        tried={server.id}, error=error))
                retried = True
                return
            else:
                # An answer cut off, or none in time: never retried, Triton may still be running it.
                if isinstance(error, UpstreamTimeout):
                    status = 504
                else:
                    gw.health.failure(server)
                keep = request.keep_alive
                message = f"endpoint '{endpoint.name}' variant '{variant.name}': {error}"
                self._write(_error(status, message, keep, vheaders), keep)
        finally:
            if not retried:  # else the retry counts and answers it
                metrics.request(endpoint.name, variant.name, str(variant.version), server.name, status,
                                gw.loop.time() - request.started)
                if variant.guard is not None:
                    gw.guard_answer(endpoint.name, variant, status)
                self._next()


def _cookie_value(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None
