"""Shadow traffic: a copy of a sample of infer requests goes to the endpoint's shadow variant.

The copy leaves after the client has its answer, as a task nobody waits for, so the shadow's
latency or failures never reach the client. At most `limit` copies are in flight per worker;
beyond that a copy is dropped and counted. The shadow's answer is compared with the primary's
(`compare_outputs`) and the result counted per (endpoint, variant, shadow variant, result); a
shadow that fails or cannot be reached counts as "error".
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from gateway.compare import compare_outputs
from gateway.metrics import Metrics
from gateway.routing import least_outstanding, upstream_path
from gateway.table import Endpoint, RoutingTable, Variant
from gateway.upstream import UpstreamError, Upstreams, UpstreamTimeout

DEFAULT_LIMIT = 64
INLINE_COMPARE_BYTES = 64 * 1024  # both bodies together; bigger comparisons leave the event loop


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
        self._executor: ThreadPoolExecutor | None = None

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
                except UpstreamTimeout:
                    pass  # slow, not unreachable: as for the primary, no ejection
                except UpstreamError:
                    self.health.failure(server)
                else:
                    self.health.success(sid)
                    if response.status == 200:
                        try:
                            a_len = _header_length(primary_headers)
                            b_len = _header_length(response.headers)
                        except ValueError:
                            return  # counted as an error
                        compare = functools.partial(compare_outputs, primary_body, a_len, response.body, b_len,
                                                    rtol=shadow.rtol, atol=shadow.atol)
                        if len(primary_body) + len(response.body) <= INLINE_COMPARE_BYTES:
                            result = compare()
                        else:
                            # Decoding big tensors would hold the event loop (and every client on
                            # it) for milliseconds: one side thread does those, one at a time.
                            if self._executor is None:
                                self._executor = ThreadPoolExecutor(1, thread_name_prefix="shadow-compare")
                            result = await self.loop.run_in_executor(self._executor, compare)
        finally:
            self.metrics.shadow_result(endpoint.name, primary.name, variant.name, result)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` for the copies in flight."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _header_length(headers: list) -> int | None:
    """Inference-Header-Content-Length, if the answer uses binary tensors. A compressed body is
    left as it is: compare_outputs recognises and inflates it (bounded)."""
    for name, value in headers:
        if name.lower() == b"inference-header-content-length":
            return int(value)
    return None
