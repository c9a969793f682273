"""The data-plane guard: stop giving traffic to a variant that fails, at once. Pure: no I/O, and
the caller passes the clock.

Prometheus-based gates see a failing green several seconds late (a scrape, a rule evaluation, a
rate window), which is too slow for "first failing response -> 100% on blue within 3 s". So each
gateway worker counts the answers of every variant that carries a `guard` in the routing table
(gateway/table.py) over a sliding window of `window_s` seconds: an answer is an error if it is a
5xx, Triton's or the gateway's own for that variant (an upstream that could not be reached, that
dropped the request or did not answer in time). Once the window holds at least `min_requests`
answers and errors / answers is above `max_error_ratio`, the guard TRIPS: from then on the worker
gives the variant no weighted or sticky traffic (gateway/routing.py's `select_variant(tripped=...)`),
and reports the trip to the control plane at once, which confirms it with a real rollback.

A trip belongs to the table's (endpoint, variant name, version, guard): it holds across tables
that keep that variant and guard, and ends when a table drops the variant or changes its version
or guard, so a control-plane retry with a fresh deployment starts clean. Each worker process
counts and trips on its own (nothing is shared between workers, as with the metrics).

The window is a ring of buckets (`buckets_for(window_s)` of them, 1 s wide for windows of 10 to
60 s) with running totals: counting an answer is O(1), and a clock that moved on clears at most
one ring's worth of buckets. It covers the last `window_s` seconds to within one bucket.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.table import Guard, RoutingTable

MIN_BUCKETS = 10
MAX_BUCKETS = 60

GuardKey = tuple[str, str, int, Guard]  # (endpoint, variant name, version, guard)


def buckets_for(window_s: float) -> int:
    """How many buckets a window of `window_s` seconds is counted in: one a second, but at
    least MIN_BUCKETS (a short window stays smooth) and at most MAX_BUCKETS (a long one cheap)."""
    return min(MAX_BUCKETS, max(MIN_BUCKETS, math.ceil(window_s)))


class Window:
    """Answers and errors over the last `window_s` seconds, in a ring of equal buckets."""

    __slots__ = ("counts", "current", "errors", "errs", "n", "requests", "width")

    def __init__(self, window_s: float, now: float):
        self.n = buckets_for(window_s)
        self.width = window_s / self.n
        self.counts = [0] * self.n
        self.errs = [0] * self.n
        self.current = int(now // self.width)  # the index (not the slot) of the newest bucket
        self.requests = 0
        self.errors = 0

    def add(self, error: bool, now: float) -> None:
        index = int(now // self.width)
        if index > self.current:
            self._advance(index)
        slot = self.current % self.n  # a clock that went back counts in the newest bucket
        self.counts[slot] += 1
        self.requests += 1
        if error:
            self.errs[slot] += 1
            self.errors += 1

    def _advance(self, index: int) -> None:
        n = self.n
        if index - self.current >= n:
            self.counts = [0] * n
            self.errs = [0] * n
            self.requests = self.errors = 0
        else:
            counts, errs = self.counts, self.errs
            for i in range(self.current + 1, index + 1):
                slot = i % n
                self.requests -= counts[slot]
                self.errors -= errs[slot]
                counts[slot] = errs[slot] = 0
        self.current = index


def breached(guard: Guard, requests: int, errors: int) -> bool:
    """The trip rule: at least `min_requests` answers, and errors / requests above the ratio."""
    return requests >= guard.min_requests and errors > guard.max_error_ratio * requests


@dataclass(frozen=True, slots=True)
class Trip:
    endpoint: str
    variant: str
    version: int
    errors: int
    requests: int
    error_ratio: float
    tripped_at: float  # unix seconds

    def as_json(self) -> dict:
        """The trip as the replica report carries it (controlplane/endpoints/gateway_api.py)."""
        return {"endpoint": self.endpoint, "variant": self.variant, "version": self.version,
                "errors": self.errors, "requests": self.requests, "error_ratio": self.error_ratio,
                "tripped_at": self.tripped_at}


class Guards:
    """One worker's guards: a window per guarded variant of the table served, and the trips.

    `sync(table)` after every table swap (and for the first table); `observe(...)` for every
    answer of a guarded variant; `tripped` maps an endpoint's name to the names of its tripped
    variants (absent when none), for `select_variant(tripped=...)`.
    """

    def __init__(self) -> None:
        self.windows: dict[GuardKey, Window] = {}
        self.trips: dict[GuardKey, Trip] = {}
        self.tripped: dict[str, frozenset[str]] = {}

    def sync(self, table: RoutingTable, now: float) -> list[Trip]:
        """Follow a new table: keep the windows and trips of the guards it still has (same
        endpoint, variant, version and guard), start windows for new ones, forget the rest.
        Returns the trips that ended."""
        active: list[GuardKey] = [
            (endpoint.name, v.name, v.version, v.guard)
            for endpoint in table.endpoints.values() for v in endpoint.variants if v.guard is not None
        ]
        keep = set(active)
        ended = [trip for key, trip in self.trips.items() if key not in keep]
        self.trips = {key: trip for key, trip in self.trips.items() if key in keep}
        self.windows = {key: self.windows.get(key) or Window(key[3].window_s, now)
                        for key in active if key not in self.trips}
        self._index()
        return ended

    def observe(self, endpoint: str, name: str, version: int, guard: Guard, error: bool, now: float,
                wall: float) -> Trip | None:
        """Count one answer (`now`: a monotonic clock; `wall`: unix time, for the trip's record).
        Returns the Trip if this answer trips the guard. An answer of a variant that the table
        served no longer guards this way (a request that started under an older table), or that
        has tripped already, is not counted."""
        key = (endpoint, name, version, guard)
        window = self.windows.get(key)
        if window is None:
            return None
        window.add(error, now)
        if not window.errors or not breached(guard, window.requests, window.errors):
            return None
        trip = Trip(endpoint=endpoint, variant=name, version=version, errors=window.errors,
                    requests=window.requests, error_ratio=window.errors / window.requests, tripped_at=wall)
        del self.windows[key]
        self.trips[key] = trip
        self._index()
        return trip

    def _index(self) -> None:
        tripped: dict[str, set[str]] = {}
        for endpoint, name, _, _ in self.trips:
            tripped.setdefault(endpoint, set()).add(name)
        self.tripped = {endpoint: frozenset(names) for endpoint, names in tripped.items()}

    def report(self) -> list[dict]:
        """The trips in effect, oldest first, as the replica report carries them."""
        return [trip.as_json() for trip in sorted(self.trips.values(), key=lambda t: t.tripped_at)]
