"""Shadow traffic: a copy of a sample of infer requests goes to the endpoint's shadow variant.

The copy leaves after the client has its answer, as a task nobody waits for, so the shadow's
latency or failures never reach the client. At most `limit` copies are in flight per worker;
beyond that a copy is dropped and counted. The shadow's answer is compared with the primary's
(`compare_outputs`) and the result counted per (endpoint, variant, shadow variant, result); a
shadow that fails or cannot be reached counts as "error".
"""
from __future__ import annotations

import asyncio
import zlib

from gateway.compare import compare_outputs
from gateway.metrics import Metrics
from gateway.routing import least_outstanding, upstream_path
from gateway.table import Endpoint, RoutingTable, Variant
from gateway.upstream import UpstreamError, Upstreams

DEFAULT_LIMIT = 64


class Shadower:
    def __init__(self, loop: asyncio.AbstractEventLoop, upstreams: Upstreams, health, metrics: Metrics, *,
                 limit: int = DEFAULT_LIMIT):
        self.loop = loop
        self.upstreams = upstreams
        self.health = health
        self.metrics = metrics
        self.limit = limit
        self.in_flight = 0
        self._tasks: set[asyncio.Task] = set()

    def mirror(self, table: RoutingTable, endpoint: Endpoint, primary: Variant, method: bytes, headers: bytes,
               body: bytes, primary_status: int, primary_headers: list, primary_body: bytes, rand: float) -> None:
        """Send the copy in the background (the caller has already sampled)."""
        if self.in_flight >= self.limit:
            self.metrics.shadow_dropped += 1
            return
        self.in_flight += 1
        task = self.loop.create_task(self._run(table, endpoint, primary, method, headers, body, primary_status,
                                               primary_headers, primary_body, rand))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.in_flight -= 1
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a bug here must not spam the loop's handler per request

    async def _run(self, table, endpoint, primary, method, headers, body, primary_status, primary_headers,
                   primary_body, rand) -> None:
        shadow = endpoint.shadow
        variant = shadow.variant
        result = "error"
        try:
            sid = least_outstanding(variant.servers, self.upstreams.outstanding, self.health.excluded(table), rand)
            if sid is not None and primary_status == 200:
                server = table.servers[sid]
                pool = self.upstreams.pool(server)
                path = pool.prefix + upstream_path(variant.model, variant.version, "infer").encode()
                head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n" % (
                    method, path, pool.host_header, headers, len(body))
                try:
                    response = await self.upstreams.send(pool, head, body)
                except UpstreamError:
                    self.health.failure(server)
                else:
                    self.health.success(sid)
                    if response.status == 200:
                        try:
                            a_len, a_body = _decoded(primary_headers, primary_body)
                            b_len, b_body = _decoded(response.headers, response.body)
                        except (ValueError, zlib.error):
                            return
                        result = compare_outputs(a_body, a_len, b_body, b_len, rtol=shadow.rtol, atol=shadow.atol)
        finally:
            self.metrics.shadow_result(endpoint.name, primary.name, variant.name, result)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)


def _decoded(headers: list, body: bytes) -> tuple[int | None, bytes]:
    header_length = None
    encoding = None
    for name, value in headers:
        lname = name.lower()
        if lname == b"inference-header-content-length":
            header_length = int(value)
        elif lname == b"content-encoding":
            encoding = value.strip().lower()
    if encoding in (b"gzip", b"deflate"):
        body = zlib.decompress(body, 47)  # 47: zlib or gzip header, detected
    return header_length, body
