"""Gateway replicas: each gateway worker process reports in, saying which table version it serves.

An observation, like a probe result: stored, never audited. A traffic change has taken effect when
every live replica serves its table version (`all_replicas_serve`).

A report also lists the guard trips in effect in that worker (gateway/guard.py: the gateway
stopped sending to a variant whose error ratio broke its guard). Each replica keeps the trips it
reported, with when they first arrived (`received_at`), for TRIP_RETENTION_S; a trip it had not
reported before queues the task `deployments.guard_tripped` (endpoint, version), whose rollout
engine confirms it with a rollback. Every worker of a gateway counts and trips on its own, so one
failing green may queue the task once per worker: the task must be idempotent. `guard_trips`
lists the trips of one endpoint's version.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.common.tasks import enqueue
from controlplane.endpoints.models import GatewayReplica, RoutingTableState

PRUNE_AFTER_S = 3600  # a replica unseen this long is gone, not merely late
LIVE_WITHIN_S = 15  # a replica reports every few seconds; one silent longer is not counted as live
TRIP_RETENTION_S = 86400  # how long a replica's row keeps a trip after it first arrived
MAX_KEPT_TRIPS = 64  # per replica, the newest


def _trip_key(trip: dict) -> tuple:
    return trip["endpoint"], trip["variant"], trip["version"], trip["tripped_at"]


def replica_report(*, replica_id: str, address: str, table_version: int, started_at: datetime, stats: dict,
                   trips: list[dict] = ()) -> None:
    """Record one report (an upsert on replica_id). `trips` (checked by gateway_api) are merged
    into those the replica reported before; a new one queues `deployments.guard_tripped` after
    the commit."""
    now = timezone.now()
    defaults = {"address": address, "table_version": table_version, "started_at": started_at,
                "stats": stats, "last_seen_at": now}
    if not trips:  # the common case: one upsert, the stored trips untouched
        GatewayReplica.objects.update_or_create(replica_id=replica_id, defaults=defaults)
        return
    with transaction.atomic():
        replica, _ = GatewayReplica.objects.select_for_update().get_or_create(
            replica_id=replica_id, defaults=defaults | {"trips": []})
        known = {_trip_key(t) for t in replica.trips}
        received_at = now.timestamp()
        new = [dict(t, received_at=received_at) for t in trips if _trip_key(t) not in known]
        cutoff = received_at - TRIP_RETENTION_S
        kept = [t for t in replica.trips + new if t["received_at"] >= cutoff]
        kept.sort(key=lambda t: (t["received_at"], t["tripped_at"]))
        for field, value in defaults.items():
            setattr(replica, field, value)
        replica.trips = kept[-MAX_KEPT_TRIPS:]
        replica.save()
        for endpoint, version in dict.fromkeys((t["endpoint"], t["version"]) for t in new):
            enqueue("deployments.guard_tripped", endpoint, version)  # sent after the commit


def guard_trips(endpoint_public_name: str, version: int, since: datetime) -> list[dict]:
    """The guard trips of `version` of the endpoint that reached the control plane at `since` or
    later, one per replica (worker) and trip, oldest first: {"replica_id", "endpoint", "variant",
    "version", "errors", "requests", "error_ratio", "tripped_at", "received_at"}, the two times as
    aware datetimes (tripped_at by the gateway's clock, received_at by ours, which `since` is
    compared with)."""
    found = []
    rows = GatewayReplica.objects.all()
    if connection.features.supports_json_field_contains:  # not SQLite (the demo): the loop below filters too
        rows = rows.filter(trips__contains=[{"endpoint": endpoint_public_name, "version": version}])
    rows = rows.values_list("replica_id", "trips")
    cutoff = since.timestamp()
    for replica_id, trips in rows:
        for t in trips:
            if t["endpoint"] == endpoint_public_name and t["version"] == version and t["received_at"] >= cutoff:
                found.append(t | {"replica_id": replica_id,
                                  "tripped_at": datetime.fromtimestamp(t["tripped_at"], tz=UTC),
                                  "received_at": datetime.fromtimestamp(t["received_at"], tz=UTC)})
    found.sort(key=lambda t: (t["received_at"], t["replica_id"]))
    return found


def replicas_prune(*, older_than_s: float = PRUNE_AFTER_S) -> int:
    """Forget replicas unseen for longer than ``older_than_s``; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    deleted, _ = GatewayReplica.objects.filter(last_seen_at__lt=cutoff).delete()
    return deleted


@dataclass(frozen=True)
class ReplicaStatus:
    replica_id: str
    address: str
    table_version: int
    started_at: datetime | None
    last_seen_at: datetime
    staleness_s: float  # seconds since it last reported
    live: bool  # reported within LIVE_WITHIN_S
    current: bool  # serves the current table version
    stats: dict


def replicas_status(*, live_within_s: float = LIVE_WITHIN_S) -> list[ReplicaStatus]:
    """Every known replica, with how stale its report is and whether it serves the current table."""
    now = timezone.now()
    current = RoutingTableState.objects.filter(pk=1).values_list("version", flat=True).first() or 0
    rows = []
    for r in GatewayReplica.objects.order_by("replica_id"):
        staleness = max(0.0, (now - r.last_seen_at).total_seconds())
        rows.append(ReplicaStatus(
            replica_id=r.replica_id, address=r.address, table_version=r.table_version, started_at=r.started_at,
            last_seen_at=r.last_seen_at, staleness_s=staleness, live=staleness <= live_within_s,
            current=r.table_version == current, stats=r.stats,
        ))
    return rows


def all_replicas_serve(version: int, *, live_within_s: float = LIVE_WITHIN_S) -> bool:
    """True when every live replica (reported within ``live_within_s``) serves ``version`` or a
    newer one. With no live replica there is no gateway to wait for: True. One query."""
    cutoff = timezone.now() - timedelta(seconds=live_within_s)
    return not GatewayReplica.objects.filter(Q(last_seen_at__gte=cutoff) & Q(table_version__lt=version)).exists()
