"""What a deployment occupies: GPU devices for the quota, and GPU memory for a same-servers green.

Reads only. Devices are the quota's unit, distinct (server id, GPU index) pairs
(`quotas.instance_groups.devices_for_instance_groups`). GPU memory comes from Prometheus
(`switchyard:gpu_memory_*`) and blue's `memory_usage` as Triton measures it, asked of each GPU
server when the plan is made (the statistics sampler skips Triton's statistics when Prometheus
has the rates, and a measure taken now beats one a sample period old).
"""
from __future__ import annotations

from dataclasses import dataclass

from controlplane.fleet.models import Server
from controlplane.fleet.triton_client import TritonClient, TritonError
from controlplane.metrics import series as S
from controlplane.metrics.client import MetricsError, client_from_settings
from controlplane.metrics.queries import AnyOf, selector
from controlplane.placements import conf as placement_conf
from controlplane.placements.models import PlacementTarget
from controlplane.placements.services.execution import parallel
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
    blue_problem: str = ""  # why blue_bytes is unknown
    memory_problem: str = ""  # why total_bytes or used_bytes is unknown

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
            problems.append(f"{h.server}: GPU memory unknown ({h.memory_problem or 'Prometheus has no nv_gpu_memory_* for it'})")
        elif h.blue_bytes is None:
            problems.append(f"{h.server}: blue's GPU memory_usage unknown ({h.blue_problem or 'not measured'})")
        elif not h.fits:
            problems.append(
                f"{h.server}: {_gib(h.used_bytes)} of {_gib(h.total_bytes)} GPU memory in use, and green needs about "
                f"{_gib(h.blue_bytes)} more (blue's measured memory_usage)")
    return problems


def gpu_bytes(model_stats: list[dict]) -> float | None:
    """Pure: the GPU bytes Triton's statistics report in `memory_usage` ({type, id, byte_size}
    rows, per version), summed; None when no version reports any GPU row."""
    rows = [row for entry in model_stats if isinstance(entry, dict)
            for row in entry.get("memory_usage") or [] if isinstance(row, dict) and row.get("type") == "GPU"]
    sizes = [r["byte_size"] for r in rows
             if isinstance(r.get("byte_size"), (int, float)) and not isinstance(r.get("byte_size"), bool)]
    return float(sum(sizes)) if sizes else None


def _measure_blue(job: tuple[str, str, int]) -> tuple[float | None, str]:
    """One server's answer: blue's GPU bytes there, or None and why."""
    url, model, version = job
    client = TritonClient(url, timeout=placement_conf.live_timeout(), connect_timeout=min(placement_conf.live_timeout(), 1.0))
    try:
        measured = gpu_bytes(client.stats(model, version))
    except TritonError as exc:
        return None, f"Triton did not give its statistics: {exc.message}"
    if measured is None:
        return None, f"Triton reports no GPU memory_usage for v{version}; its backend may not measure it"
    return measured, ""


def gpu_headroom(targets: list[PlacementTarget], blue_version: int) -> list[Headroom]:
    """GPU memory on blue's GPU servers (CPU-only servers need no check): one Prometheus query,
    and one statistics call per server, in parallel."""
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
        memory_problem = ""
    except MetricsError as exc:  # unknown, and so refused by headroom_problems
        memory_problem = f"Prometheus is not answering: {exc.message}"
    measured = parallel(_measure_blue, [(t.server.http_url, t.model.triton_name, blue_version) for t in gpu_targets])
    return [
        Headroom(server=t.server.name, total_bytes=total.get(t.server.name), used_bytes=used.get(t.server.name),
                 blue_bytes=blue, blue_problem=problem, memory_problem=memory_problem)
        for t, (blue, problem) in zip(gpu_targets, measured)
    ]
