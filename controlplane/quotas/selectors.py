"""Reads of GPU quotas: what each team may hold, holds, and what holds it.

Two queries for any number of teams: one for the quota rows, one for the active reservations
grouped by (team, kind, holder, model).
"""
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Sum

from controlplane.accounts.models import Team
from controlplane.quotas.models import GpuQuota, Reservation, ReservationKind

NO_MODEL = "(no model)"
PALETTE_SIZE = 8  # colour classes quota-c0 .. quota-c7 in switchyard.css


@dataclass(frozen=True)
class ModelUsage:
    model: str
    gpus: int


@dataclass(frozen=True)
class HolderUsage:
    kind: str
    holder: str
    gpus: int
    models: tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    """One coloured part of the quota bar: a model's placements, or one deployment's surge."""

    label: str
    kind: str
    gpus: int
    percent: float  # of the bar's width
    colour: int
    detail: str = ""

    @property
    def is_surge(self) -> bool:
        return self.kind == ReservationKind.DEPLOYMENT


@dataclass(frozen=True)
class QuotaUsage:
    team: Team
    limit: int
    held: int
    by_model: tuple[ModelUsage, ...]
    by_holder: tuple[HolderUsage, ...]
    segments: tuple[Segment, ...]

    @property
    def free(self) -> int:
        return max(self.limit - self.held, 0)

    @property
    def over(self) -> int:
        return max(self.held - self.limit, 0)

    @property
    def scale(self) -> int:
        """The GPUs the full bar stands for: the quota, or what is held when that is more."""
        return max(self.limit, self.held)

    @property
    def limit_percent(self) -> float:
        return 100.0 * self.limit / self.scale if self.scale else 100.0


def _sorted(items, key_name):
    return tuple(sorted(items, key=lambda item: (-item.gpus, getattr(item, key_name))))


def _usage(team: Team, limit: int, rows: list[dict]) -> QuotaUsage:
    held = sum(row["gpus"] for row in rows)
    scale = max(limit, held)
    per_model: dict[str, int] = defaultdict(int)
    per_holder: dict[tuple[str, str], int] = defaultdict(int)
    holder_models: dict[tuple[str, str], set[str]] = defaultdict(set)
    placed: dict[str, int] = defaultdict(int)
    for row in rows:
        model = row["version__model__name"] or NO_MODEL
        per_model[model] += row["gpus"]
        per_holder[row["kind"], row["holder"]] += row["gpus"]
        holder_models[row["kind"], row["holder"]].add(model)
        if row["kind"] == ReservationKind.PLACEMENT:
            placed[model] += row["gpus"]

    by_holder = _sorted(
        (HolderUsage(kind, holder, gpus, tuple(sorted(holder_models[kind, holder]))) for (kind, holder), gpus in per_holder.items()),
        "holder",
    )
    # The bar: placements by model, then each deployment's surge on top.
    parts = [(model, ReservationKind.PLACEMENT, gpus, "") for model, gpus in sorted(placed.items(), key=lambda kv: (-kv[1], kv[0]))]
    parts += [
        (h.holder or "deployment", h.kind, h.gpus, "surge of " + ", ".join(h.models))
        for h in by_holder
        if h.kind == ReservationKind.DEPLOYMENT
    ]
    segments = tuple(
        Segment(label=label, kind=kind, gpus=gpus, percent=round(100.0 * gpus / scale, 3), colour=i % PALETTE_SIZE, detail=detail)
        for i, (label, kind, gpus, detail) in enumerate(parts)
    )
    by_model = _sorted((ModelUsage(model, gpus) for model, gpus in per_model.items()), "model")
    return QuotaUsage(team=team, limit=limit, held=held, by_model=by_model, by_holder=by_holder, segments=segments)


def quota_usages(teams: Iterable[Team]) -> dict[int, QuotaUsage]:
    """Usage of each team, keyed by team id, in two queries whatever the number of teams."""
    teams = list(teams)
    ids = [team.pk for team in teams]
    limits = dict(GpuQuota.objects.filter(team_id__in=ids).values_list("team_id", "gpus"))
    rows: dict[int, list[dict]] = defaultdict(list)
    grouped = (
        Reservation.objects.filter(team_id__in=ids, released_at__isnull=True)
        .values("team_id", "kind", "holder", "version__model__name")
        .annotate(gpus=Sum("gpus"))
        .order_by()
    )
    for row in grouped:
        rows[row["team_id"]].append(row)
    return {team.pk: _usage(team, limits.get(team.pk, 0), rows[team.pk]) for team in teams}


def quota_usage(team: Team) -> QuotaUsage:
    return quota_usages([team])[team.pk]


def reservations_active(team: Team):
    return (
        Reservation.objects.filter(team=team, released_at__isnull=True)
        .select_related("version__model", "server")
        .order_by("created_at", "id")
    )
