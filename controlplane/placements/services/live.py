"""The live view: what each server last said about a placement's targets, and batching insight.

A periodic task (``placements.sample_live``) takes the samples; a web request only reads the
last one, so no request waits on Triton. Rates come from the difference between a target's last
two samples of the same load (Triton's counters restart at every load).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from controlplane.common.locks import cache_lock
from controlplane.fleet.triton_client import TritonClient, TritonError
from controlplane.placements import conf, drift
from controlplane.placements.insight import (
    BatchingInsight,
    StatsSample,
    batching_insight,
)
from controlplane.placements.models import (
    ACTIVE_STATES,
    Placement,
    PlacementTarget,
    TargetSample,
)
from controlplane.placements.services.execution import parallel


@dataclass(frozen=True)
class LiveTarget:
    """What a server said at ``taken_at`` about one target: its versions and batching."""

    states: list[dict]
    insight: BatchingInsight | None = None
    error: str = ""
    taken_at: datetime | None = None
    age_seconds: float | None = None


def placement_live(placement: Placement) -> dict[int, LiveTarget]:
    """The last sample of each active target that has one (one query; no Triton call)."""
    now = timezone.now()
    live: dict[int, LiveTarget] = {}
    for sample in TargetSample.objects.filter(target__placement=placement, target__state__in=ACTIVE_STATES):
        insight = None
        if sample.stats:
            previous = StatsSample(**sample.previous) if sample.previous else None
            insight = batching_insight(StatsSample(**sample.stats), previous)
        live[sample.target_id] = LiveTarget(
            states=sample.states, insight=insight, error=sample.error, taken_at=sample.taken_at,
            age_seconds=max(0.0, (now - sample.taken_at).total_seconds()),
        )
    return live


@dataclass(frozen=True)
class _Seen:
    rows: list[dict]
    stats: StatsSample | None = None
    error: str = ""


def _sample_server(job: tuple[str, frozenset[str]]) -> dict[str, _Seen]:
    """One index call per server, then the statistics of each wanted model that is READY there."""
    url, names = job
    client = TritonClient(url, timeout=conf.live_timeout(), connect_timeout=min(conf.live_timeout(), 1.0))
    try:
        grouped = drift.rows_by_name(client.index())
    except TritonError as exc:
        return {name: _Seen(rows=[], error=str(exc)) for name in names}
    seen = {}
    for name in sorted(names):
        rows = [r for r in grouped.get(name, []) if r.get("state")]
        if not drift.versions_in(rows, drift.READY):
            seen[name] = _Seen(rows=rows)
            continue
        try:
            seen[name] = _Seen(rows=rows, stats=StatsSample.from_triton(client.stats(name), at=time.time()))
        except TritonError as exc:
            seen[name] = _Seen(rows=rows, error=str(exc))
    return seen


def placements_sample() -> dict[str, int]:
    """Periodic: sample every active target of an active placement, in parallel per server, and
    keep the last sample (and the one before, of the same load). Skipped while another runs."""
    with cache_lock("placements:sample", ttl=conf.live_timeout() * 4 + 10) as acquired:
        if not acquired:
            return {"skipped": 1}
        return _sample()


def _sample() -> dict[str, int]:
    found = list(
        PlacementTarget.objects.filter(state__in=ACTIVE_STATES, placement__removed_at__isnull=True, server__isnull=False)
        .select_related("server", "model", "sample")
    )
    by_url: dict[str, list[PlacementTarget]] = defaultdict(list)
    for target in found:
        by_url[target.server.http_url].append(target)
    jobs = [(url, frozenset(t.model.triton_name for t in ts)) for url, ts in by_url.items()]
    now = timezone.now()
    samples = []
    for (url, _), seen in zip(jobs, parallel(_sample_server, jobs)):
        for target in by_url[url]:
            one = seen[target.model.triton_name]
            old = getattr(target, "sample", None)  # the reverse one-to-one raises AttributeError when absent
            same_load = old is not None and old.loaded_at == target.loaded_at and old.stats
            samples.append(TargetSample(
                target=target, taken_at=now, loaded_at=target.loaded_at, states=one.rows, error=one.error,
                stats=one.stats.as_dict() if one.stats else None,
                previous=old.stats if same_load and one.stats else None,
            ))
    TargetSample.objects.bulk_create(samples, update_conflicts=True, unique_fields=["target"],
                                     update_fields=["taken_at", "loaded_at", "states", "stats", "previous", "error"])
    TargetSample.objects.exclude(target__in=[t.pk for t in found]).delete()  # targets gone or removed
    return {"servers": len(jobs), "targets": len(samples), "unreachable": sum(1 for s in samples if s.error and not s.states)}
