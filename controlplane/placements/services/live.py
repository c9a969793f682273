"""The live view: what each server last said about a placement's targets, and batching insight.

A periodic task (``placements.sample_live``) takes the samples; a web request only reads the
last one, so no request waits on Triton.

Batching insight comes from Prometheus when it is configured: its one-minute rates per (server,
model, version), read by one instant query with a short deadline (a down Prometheus costs a web
request at most WEB_TIMEOUT and the table says why it has no numbers). Without Prometheus, the
sampler also reads Triton's statistics, and rates come from the difference between a target's
last two samples of the same load (Triton's counters restart at every load).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime

from django.utils import timezone

from controlplane.common.locks import cache_lock
from controlplane.fleet.triton_client import TritonClient, TritonError
from controlplane.metrics import queries as metric_queries
from controlplane.metrics.client import (
    MetricsError,
    client_from_settings,
    prometheus_url,
)
from controlplane.placements import conf, drift
from controlplane.placements.insight import (
    BatchingInsight,
    StatsSample,
    VersionRates,
    batching_insight,
    insight_from_rates,
)
from controlplane.placements.models import (
    ACTIVE_STATES,
    Placement,
    PlacementTarget,
    TargetSample,
)
from controlplane.placements.services.execution import parallel

INSIGHT_WINDOW_S = 60.0  # the recorded series are one-minute rates
WEB_TIMEOUT = 1.0  # seconds a web request waits on Prometheus for the insight, at most
SOURCE_PROMETHEUS, SOURCE_TRITON = "prometheus", "triton"


@dataclass(frozen=True)
class LiveTarget:
    """What a server said at ``taken_at`` about one target: its versions and batching.
    ``insight_source`` says where the batching numbers come from; ``insight_problem`` why there
    are none (Prometheus not answering)."""

    states: list[dict]
    insight: BatchingInsight | None = None
    error: str = ""
    taken_at: datetime | None = None
    age_seconds: float | None = None
    insight_source: str = SOURCE_TRITON
    insight_problem: str = ""


def insight_from_prometheus() -> bool:
    """Whether batching insight is read from Prometheus (configured) or sampled from Triton."""
    return bool(prometheus_url())


def placement_live(placement: Placement) -> dict[int, LiveTarget]:
    """The last sample of each active target that has one (one query; no Triton call), with
    batching from Prometheus when it is configured (one instant query)."""
    now = timezone.now()
    live: dict[int, LiveTarget] = {}
    servers: dict[int, str] = {}
    samples = TargetSample.objects.filter(target__placement=placement, target__state__in=ACTIVE_STATES).select_related("target")
    for sample in samples:
        insight = None
        if sample.stats:
            previous = StatsSample(**sample.previous) if sample.previous else None
            insight = batching_insight(StatsSample(**sample.stats), previous)
        servers[sample.target_id] = sample.target.server_name
        live[sample.target_id] = LiveTarget(
            states=sample.states, insight=insight, error=sample.error, taken_at=sample.taken_at,
            age_seconds=max(0.0, (now - sample.taken_at).total_seconds()),
        )
    if live and insight_from_prometheus():
        insights, problem = _prometheus_insight(placement, set(servers.values()))
        live = {
            pk: replace(one, insight=insights.get(servers[pk]), insight_source=SOURCE_PROMETHEUS, insight_problem=problem)
            for pk, one in live.items()
        }
    return live


def _prometheus_insight(placement: Placement, servers: set[str]) -> tuple[dict[str, BatchingInsight], str]:
    """Per server name, the placement's versions summed; or ({}, why) when Prometheus fails."""
    try:
        client = client_from_settings(max_timeout=WEB_TIMEOUT)
        rates = metric_queries.triton_batching(client, placement.model.triton_name, sorted(servers))
    except MetricsError as exc:
        return {}, f"Prometheus is not answering: {exc.message}"
    wanted = {str(v) for v in placement.versions}
    per_server: dict[str, list[VersionRates]] = defaultdict(list)
    for r in rates:
        if r.version in wanted:
            per_server[r.server].append(VersionRates(r.requests, r.inferences, r.batch_size, r.queue_share))
    return {name: insight_from_rates(found, window_seconds=INSIGHT_WINDOW_S) for name, found in per_server.items()}, ""


@dataclass(frozen=True)
class _Seen:
    rows: list[dict]
    stats: StatsSample | None = None
    error: str = ""


def _sample_server(job: tuple[str, frozenset[str], bool]) -> dict[str, _Seen]:
    """One index call per server, then (without Prometheus) the statistics of each wanted model
    that is READY there."""
    url, names, with_stats = job
    client = TritonClient(url, timeout=conf.live_timeout(), connect_timeout=min(conf.live_timeout(), 1.0))
    try:
        grouped = drift.rows_by_name(client.index())
    except TritonError as exc:
        return {name: _Seen(rows=[], error=str(exc)) for name in names}
    seen = {}
    for name in sorted(names):
        rows = [r for r in grouped.get(name, []) if r.get("state")]
        if not with_stats or not drift.versions_in(rows, drift.READY):
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
    with_stats = not insight_from_prometheus()  # Prometheus has the rates: only the index is needed
    jobs = [(url, frozenset(t.model.triton_name for t in ts), with_stats) for url, ts in by_url.items()]
    now = timezone.now()
    samples = []
    for (url, _, _), seen in zip(jobs, parallel(_sample_server, jobs)):
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
