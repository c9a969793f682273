"""Which servers a worker sends to: the table's health, plus passive ejection.

A server the table marks `healthy: false` is skipped. A server that fails `eject_after`
connection attempts in a row (refused, reset, timed out, or dropped before answering) is ejected
by this worker; a background probe per ejected server re-admits it as soon as
`GET /v2/health/live` answers 200 (every `probe_interval` seconds).

`excluded(table)` is what least-outstanding skips; it is cached per (table, ejection state), so a
request normally costs one dict lookup.
"""
from __future__ import annotations

import asyncio

from gateway.metrics import Metrics
from gateway.table import RoutingTable, Server
from gateway.upstream import probe_live

DEFAULT_EJECT_AFTER = 3
DEFAULT_PROBE_INTERVAL = 0.5


class Health:
    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: Metrics, *,
                 eject_after: int = DEFAULT_EJECT_AFTER, probe_interval: float = DEFAULT_PROBE_INTERVAL):
        self.loop = loop
        self.metrics = metrics
        self.eject_after = eject_after
        self.probe_interval = probe_interval
        self.failures: dict[int, int] = {}  # consecutive, by server id
        self.ejected: dict[int, Server] = {}
        self._probes: dict[int, asyncio.Task] = {}
        self._cache_table: RoutingTable | None = None
        self._cache_generation = -1
        self._cache: frozenset[int] = frozenset()
        self._generation = 0
        self.closed = False

    def excluded(self, table: RoutingTable) -> frozenset[int]:
        if table is not self._cache_table or self._generation != self._cache_generation:
            self._cache = frozenset(
                [sid for sid, s in table.servers.items() if not s.healthy] + list(self.ejected))
            self._cache_table = table
            self._cache_generation = self._generation
        return self._cache

    def success(self, server_id: int) -> None:
        if self.failures:
            self.failures.pop(server_id, None)

    def failure(self, server: Server) -> None:
        sid = server.id
        n = self.failures.get(sid, 0) + 1
        self.failures[sid] = n
        if n >= self.eject_after and sid not in self.ejected and not self.closed:
            self.ejected[sid] = server
            self._generation += 1
            self.metrics.ejection(server.name)
            self._probes[sid] = self.loop.create_task(self._probe(server))

    def readmit(self, server_id: int) -> None:
        if self.ejected.pop(server_id, None) is not None:
            self.failures.pop(server_id, None)
            self._generation += 1

    def forget_others(self, server_ids) -> None:
        """Stop probing servers the table no longer lists; if one comes back, it starts afresh."""
        for sid in [sid for sid in self.ejected if sid not in server_ids]:
            self.readmit(sid)
            task = self._probes.pop(sid, None)
            if task is not None:
                task.cancel()
        for sid in [sid for sid in self.failures if sid not in server_ids]:
            del self.failures[sid]

    async def _probe(self, server: Server) -> None:
        try:
            while server.id in self.ejected:
                await asyncio.sleep(self.probe_interval)
                if await probe_live(server, timeout=max(self.probe_interval, 0.5)):
                    self.readmit(server.id)
        finally:
            self._probes.pop(server.id, None)

    def close(self) -> None:
        self.closed = True
        for task in list(self._probes.values()):
            task.cancel()
