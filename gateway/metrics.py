"""The gateway's own Prometheus metrics, hand-rolled: plain dicts keyed by label tuples.

A request touches two dict entries and one bisect; nothing is formatted until a scrape. With
several workers each holds its own counts; `snapshot()` turns them into plain JSON data and
`merge()` adds snapshots up, so whichever worker a scrape lands on can answer for all of them
(see server.py for how the snapshots travel).
"""
from __future__ import annotations

import time
from bisect import bisect_left

# Upper bounds in seconds: fine below 10 ms, where the gateway's own cost shows.
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
           0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)

CODE_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}

REQUESTS = "switchyard_gateway_requests_total"
DURATION = "switchyard_gateway_request_duration_seconds"
IN_FLIGHT = "switchyard_gateway_in_flight_requests"
EJECTIONS = "switchyard_gateway_ejections_total"
SHADOW = "switchyard_gateway_shadow_comparisons_total"
SHADOW_DROPPED = "switchyard_gateway_shadow_dropped_total"
TABLE_VERSION = "switchyard_gateway_table_version"
TABLE_AGE = "switchyard_gateway_table_age_seconds"
SOURCE_UP = "switchyard_gateway_table_source_up"
WORKERS = "switchyard_gateway_workers"
GUARD_TRIPS = "switchyard_gateway_guard_trips_total"
GUARD_TRIPPED = "switchyard_gateway_guard_tripped"

_REQUEST_LABELS = ("endpoint", "variant", "version", "server", "code_class")
_DURATION_LABELS = ("endpoint", "variant")
_SHADOW_LABELS = ("endpoint", "variant", "shadow_variant", "result")
_GUARD_LABELS = ("endpoint", "variant")


class Metrics:
    """One worker's counts. Only the event loop thread touches it."""

    __slots__ = (
        "durations",
        "ejections",
        "guard_tripped",
        "guard_trips",
        "in_flight",
        "requests",
        "shadow",
        "shadow_dropped",
        "source_up",
        "table_generated_at",
        "table_version",
    )

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str, str], int] = {}
        # (endpoint, variant) -> [count per bucket (non-cumulative) ..., +Inf count, sum]
        self.durations: dict[tuple[str, str], list] = {}
        self.in_flight = 0
        self.ejections: dict[str, int] = {}
        self.shadow: dict[tuple[str, str, str, str], int] = {}
        self.shadow_dropped = 0
        self.table_version = 0
        self.table_generated_at = 0.0
        self.source_up = 1
        self.guard_trips: dict[tuple[str, str], int] = {}
        self.guard_tripped: dict[tuple[str, str], int] = {}  # set from the guards before each snapshot

    def request(self, endpoint: str, variant: str, version: str, server: str, status: int, seconds: float) -> None:
        key = (endpoint, variant, version, server, CODE_CLASS.get(status // 100, "5xx"))
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        hist = self.durations.get((endpoint, variant))
        if hist is None:
            hist = self.durations[(endpoint, variant)] = [0] * (len(BUCKETS) + 1) + [0.0]
        hist[bisect_left(BUCKETS, seconds)] += 1
        hist[-1] += seconds

    def ejection(self, server: str) -> None:
        self.ejections[server] = self.ejections.get(server, 0) + 1

    def guard_trip(self, endpoint: str, variant: str) -> None:
        key = (endpoint, variant)
        self.guard_trips[key] = self.guard_trips.get(key, 0) + 1

    def shadow_result(self, endpoint: str, variant: str, shadow_variant: str, result: str) -> None:
        key = (endpoint, variant, shadow_variant, result)
        self.shadow[key] = self.shadow.get(key, 0) + 1

    def snapshot(self) -> dict:
        """Plain JSON-able data, for merging with other workers' snapshots."""
        return {
            "requests": [[list(k), v] for k, v in self.requests.items()],
            "durations": [[list(k), list(v)] for k, v in self.durations.items()],
            "in_flight": self.in_flight,
            "ejections": [[k, v] for k, v in self.ejections.items()],
            "shadow": [[list(k), v] for k, v in self.shadow.items()],
            "shadow_dropped": self.shadow_dropped,
            "table_version": self.table_version,
            "table_generated_at": self.table_generated_at,
            "source_up": self.source_up,
            "guard_trips": [[list(k), v] for k, v in self.guard_trips.items()],
            "guard_tripped": [[list(k), v] for k, v in self.guard_tripped.items()],
            "workers": 1,
        }


def merge(snapshots: list[dict]) -> dict:
    """Add workers' snapshots up. Counters, histograms and in-flight requests are summed. The
    table gauges are not sums: the version is the lowest any worker serves (a change has taken
    effect everywhere only when that one has it), the table's generation time the oldest, and the
    source is up only if it is up for every worker."""
    requests: dict[tuple, int] = {}
    durations: dict[tuple, list] = {}
    ejections: dict[str, int] = {}
    shadow: dict[tuple, int] = {}
    guard_trips: dict[tuple, int] = {}
    guard_tripped: dict[tuple, int] = {}
    out = {"in_flight": 0, "shadow_dropped": 0, "workers": 0}
    for snap in snapshots:
        for k, v in snap["requests"]:
            requests[tuple(k)] = requests.get(tuple(k), 0) + v
        for k, v in snap["durations"]:
            have = durations.get(tuple(k))
            durations[tuple(k)] = list(v) if have is None else [a + b for a, b in zip(have, v)]
        for k, v in snap["ejections"]:
            ejections[k] = ejections.get(k, 0) + v
        for k, v in snap["shadow"]:
            shadow[tuple(k)] = shadow.get(tuple(k), 0) + v
        for k, v in snap.get("guard_trips", ()):
            guard_trips[tuple(k)] = guard_trips.get(tuple(k), 0) + v
        for k, v in snap.get("guard_tripped", ()):
            guard_tripped[tuple(k)] = guard_tripped.get(tuple(k), 0) + v
        out["in_flight"] += snap["in_flight"]
        out["shadow_dropped"] += snap["shadow_dropped"]
        out["workers"] += snap["workers"]
    out["requests"] = [[list(k), v] for k, v in requests.items()]
    out["durations"] = [[list(k), v] for k, v in durations.items()]
    out["ejections"] = [[k, v] for k, v in ejections.items()]
    out["shadow"] = [[list(k), v] for k, v in shadow.items()]
    out["guard_trips"] = [[list(k), v] for k, v in guard_trips.items()]
    out["guard_tripped"] = [[list(k), v] for k, v in guard_tripped.items()]
    out["table_version"] = min((s["table_version"] for s in snapshots), default=0)
    out["table_generated_at"] = min((s["table_generated_at"] for s in snapshots), default=0.0)
    out["source_up"] = min((s["source_up"] for s in snapshots), default=0)
    return out


def escape(value: str) -> str:
    """A label value as the text exposition format wants it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values) -> str:
    return ",".join(f'{n}="{escape(str(v))}"' for n, v in zip(names, values))


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def render(snap: dict, *, now: float | None = None) -> bytes:
    """Prometheus text format (version 0.0.4) for a snapshot or a merge of snapshots."""
    now = time.time() if now is None else now
    out: list[str] = []
    add = out.append

    add(f"# HELP {REQUESTS} Requests answered through the gateway, by endpoint, variant, version, server and status class.")
    add(f"# TYPE {REQUESTS} counter")
    for k, v in sorted(snap["requests"]):
        add(f"{REQUESTS}{{{_labels(_REQUEST_LABELS, k)}}} {v}")

    add(f"# HELP {DURATION} Time from a complete request to its response, as the gateway sees it.")
    add(f"# TYPE {DURATION} histogram")
    for k, v in sorted(snap["durations"]):
        labels = _labels(_DURATION_LABELS, k)
        cumulative = 0
        for bound, count in zip(BUCKETS, v):
            cumulative += count
            add(f'{DURATION}_bucket{{{labels},le="{bound}"}} {cumulative}')
        cumulative += v[len(BUCKETS)]
        add(f'{DURATION}_bucket{{{labels},le="+Inf"}} {cumulative}')
        add(f"{DURATION}_sum{{{labels}}} {_num(v[-1])}")
        add(f"{DURATION}_count{{{labels}}} {cumulative}")

    add(f"# HELP {IN_FLIGHT} Requests received and not yet answered.")
    add(f"# TYPE {IN_FLIGHT} gauge")
    add(f"{IN_FLIGHT} {snap['in_flight']}")

    add(f"# HELP {EJECTIONS} Times a server was taken out of rotation after consecutive connection failures.")
    add(f"# TYPE {EJECTIONS} counter")
    for k, v in sorted(snap["ejections"]):
        add(f'{EJECTIONS}{{server="{escape(k)}"}} {v}')

    add(f"# HELP {SHADOW} Shadow responses compared with the primary's, by result (agree, disagree, error).")
    add(f"# TYPE {SHADOW} counter")
    for k, v in sorted(snap["shadow"]):
        add(f"{SHADOW}{{{_labels(_SHADOW_LABELS, k)}}} {v}")

    add(f"# HELP {SHADOW_DROPPED} Shadow copies not sent because too many were in flight.")
    add(f"# TYPE {SHADOW_DROPPED} counter")
    add(f"{SHADOW_DROPPED} {snap['shadow_dropped']}")

    add(f"# HELP {GUARD_TRIPS} Times a variant's guard tripped (too many errors): it then gets no weighted traffic.")
    add(f"# TYPE {GUARD_TRIPS} counter")
    for k, v in sorted(snap.get("guard_trips", ())):
        add(f"{GUARD_TRIPS}{{{_labels(_GUARD_LABELS, k)}}} {v}")

    add(f"# HELP {GUARD_TRIPPED} Per guarded variant: how many workers have its guard tripped now (0: none).")
    add(f"# TYPE {GUARD_TRIPPED} gauge")
    for k, v in sorted(snap.get("guard_tripped", ())):
        add(f"{GUARD_TRIPPED}{{{_labels(_GUARD_LABELS, k)}}} {v}")

    add(f"# HELP {TABLE_VERSION} The routing-table version served (the lowest over this replica's workers).")
    add(f"# TYPE {TABLE_VERSION} gauge")
    add(f"{TABLE_VERSION} {snap['table_version']}")

    generated_at = snap["table_generated_at"]
    add(f"# HELP {TABLE_AGE} Seconds since the control plane built the table served (the oldest over workers).")
    add(f"# TYPE {TABLE_AGE} gauge")
    add(f"{TABLE_AGE} {_num(max(0.0, now - generated_at) if generated_at else 0.0)}")

    add(f"# HELP {SOURCE_UP} 1 if the table source (control plane or Redis) answers, 0 while serving the last good table.")
    add(f"# TYPE {SOURCE_UP} gauge")
    add(f"{SOURCE_UP} {snap['source_up']}")

    add(f"# HELP {WORKERS} Worker processes whose counts this scrape includes.")
    add(f"# TYPE {WORKERS} gauge")
    add(f"{WORKERS} {snap['workers']}")
    add("")
    return "\n".join(out).encode()
