"""Gateway replicas: each gateway worker process reports in, saying which table version it serves.

An observation, like a probe result: stored, never audited. A traffic change has taken effect when
every live replica serves its table version (`all_replicas_serve`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from controlplane.endpoints.models import GatewayReplica, RoutingTableState

PRUNE_AFTER_S = 3600  # a replica unseen this long is gone, not merely late
LIVE_WITHIN_S = 15  # a replica reports every few seconds; one silent longer is not counted as live


def replica_report(*, replica_id: str, address: str, table_version: int, started_at: datetime, stats: dict) -> None:
    """Record one report (an upsert on replica_id)."""
    GatewayReplica.objects.update_or_create(
        replica_id=replica_id,
        defaults={"address": address, "table_version": table_version, "started_at": started_at,
                  "stats": stats, "last_seen_at": timezone.now()},
    )


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
