"""What a deployment occupies: GPU devices for the quota, and GPU memory for a same-servers green.

Reads only. Devices are the quota's unit, distinct (server id, GPU index) pairs
(`quotas.instance_groups.devices_for_instance_groups`). GPU memory comes from Prometheus
(`switchyard:gpu_memory_*`) and blue's measured `memory_usage` (the last statistics sample).
"""
from __future__ import annotations

from dataclasses import dataclass

from controlplane.fleet.models import Server
from controlplane.metrics import series as S
from controlplane.metrics.client import MetricsError, client_from_settings
from controlplane.metrics.queries import AnyOf, selector
from controlplane.placements.models import PlacementTarget
from controlplane.quotas.instance_groups import devices_for_instance_groups

Device = tuple[int, int]


def devices_of(rendered: dict, server: Server) -> set[Device]:
    """The devices a rendered config occupies on one server."""
    indexes = devices_for_instance_groups(rendered.get("instance_group"), server_gpu_count=server.gpu_count)
    return {(server.pk, i) for i in indexes}


def devices_of_targets(targets: list[PlacementTarget]) -> set[Device]:
    found: set[Device] = set()
    for t in targets:
        if t.server is not None:
            found |= devices_of(t.placement.rendered_config, t.server)
    return found


@dataclass(frozen=True)
class Headroom:
    server: str
    total_bytes: float | None
    used_bytes: float | None
    blue_bytes: float | None  # what blue's instances take there, as Triton measured it

    @property
    def known(self) -> bool:
        return self.total_bytes is not None and self.used_bytes is not None

    @property
    def fits(self) -> bool:
        """Green takes about what blue takes: it fits when used + blue's share stays within total."""
        return self.known and self.blue_bytes is not None and self.used_bytes + self.blue_bytes <= self.total_bytes


def _gib(value: float | None) -> str:
    return "unknown" if value is None else f"{value / 2**30:.1f} GiB"


def headroom_problems(rows: list[Headroom]) -> list[str]:
    """Pure: the servers where a same-servers green does not fit, or where nobody knows."""
    problems = []
    for h in rows:
        if not h.known:
            problems.append(f"{h.server}: GPU memory unknown (Prometheus has no nv_gpu_memory_* for it)")
        elif h.blue_bytes is None:
            problems.append(f"{h.server}: blue's GPU memory_usage unknown (no statistics sample yet)")
        elif not h.fits:
            problems.append(
                f"{h.server}: {_gib(h.used_bytes)} of {_gib(h.total_bytes)} GPU memory in use, and green needs about "
                f"{_gib(h.blue_bytes)} more (blue's measured memory_usage)")
    return problems


def _blue_bytes(target: PlacementTarget, version: int) -> float | None:
    sample = getattr(target, "sample", None)
    stats = (sample.stats or {}) if sample is not None else {}
    memory = stats.get("memory_usage", {}) if isinstance(stats, dict) else {}
    if isinstance(memory, dict) and str(version) in memory:
        memory = memory[str(version)]
    total = 0.0
    found = False
    for row in memory if isinstance(memory, list) else []:
        if isinstance(row, dict) and row.get("type") == "GPU" and isinstance(row.get("byte_size"), (int, float)):
            total += row["byte_size"]
            found = True
    return total if found else None


def gpu_headroom(targets: list[PlacementTarget], blue_version: int) -> list[Headroom]:
    """GPU memory on blue's GPU servers (CPU-only servers need no check). One Prometheus query."""
    gpu_targets = [t for t in targets if t.server is not None and t.server.gpu_count > 0]
    if not gpu_targets:
        return []
    names = sorted({t.server.name for t in gpu_targets})
    used: dict[str, float] = {}
    total: dict[str, float] = {}
    try:
        client = client_from_settings()
        matcher = {"server": AnyOf(tuple(names))}
        query = (f'label_replace(sum by (server) ({selector(S.GPU_MEMORY_USED, **matcher)}), "q", "used", "", "")'
                 f' or label_replace(sum by (server) ({selector(S.GPU_MEMORY_TOTAL, **matcher)}), "q", "total", "", "")')
        for v in client.query(query):
            into = used if v.labels.get("q") == "used" else total
            if v.value is not None:
                into[v.labels.get("server", "")] = v.value
    except MetricsError:
        pass  # unknown, and so refused by headroom_problems
    return [
        Headroom(server=t.server.name, total_bytes=total.get(t.server.name), used_bytes=used.get(t.server.name),
                 blue_bytes=_blue_bytes(t, blue_version))
        for t in gpu_targets
    ]
