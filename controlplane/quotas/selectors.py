"""Reads of GPU quotas: what each team may hold, holds, and what holds it.

What a team holds is a number of distinct devices, (server, GPU index) pairs: reservations
naming the same device hold it once (see quotas/devices.py). Usage takes two queries for any
number of teams: one for the quota rows, one for the active reservations with their devices.
"""
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.accounts.models import Team
from controlplane.quotas.devices import Device, device_holders, devices_of
from controlplane.quotas.models import GpuQuota, Reservation, ReservationKind

NO_MODEL = "(no model)"
PALETTE_SIZE = 8  # colour classes quota-c0 .. quota-c7 in switchyard.css


@dataclass(frozen=True)
class ModelUsage:
    model: str
    gpus: int  # distinct devices of the model's reservations; a GPU shared with another model counts for both


@dataclass(frozen=True)
class HolderUsage:
    kind: str
    holder: str
    gpus: int  # distinct devices of the holder's reservations
    models: tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    """One coloured part of the quota bar: a model's placements, or one deployment's surge.
    Segments share no device, so they add up to what is held."""

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
    held: int  # distinct devices
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


def _row_devices(row: dict) -> frozenset[Device]:
    # A reservation whose server was removed names devices that no longer exist: it holds none.
    return devices_of(row["server_id"], row["devices"]) if row["server_id"] is not None else frozenset()


def _usage(team: Team, limit: int, rows: list[dict]) -> QuotaUsage:
    """``rows``: the team's active reservations, oldest first."""
    per_model: dict[str, set[Device]] = defaultdict(set)
    per_holder: dict[tuple[str, str], set[Device]] = defaultdict(set)
    holder_models: dict[tuple[str, str], set[str]] = defaultdict(set)
    owner: dict[Device, tuple[str, str]] = {}  # which bar segment draws each device
    for row in sorted(rows, key=lambda r: (r["kind"] != ReservationKind.DEPLOYMENT, r["id"])):
        model = row["version__model__name"] or NO_MODEL
        devices = _row_devices(row)
        per_model[model] |= devices
        per_holder[row["kind"], row["holder"]] |= devices
        holder_models[row["kind"], row["holder"]].add(model)
        # A device is drawn once: in the oldest surge that holds it, else under the model of its
        # oldest placement. So the surge shows what a rollout holds on top of blue.
        key = (row["kind"], row["holder"] if row["kind"] == ReservationKind.DEPLOYMENT else model)
        for device in devices:
            owner.setdefault(device, key)
    held = len(owner)
    scale = max(limit, held)
    drawn = Counter(owner.values())

    by_holder = _sorted(
        (HolderUsage(kind, holder, len(devices), tuple(sorted(holder_models[kind, holder])))
         for (kind, holder), devices in per_holder.items()),
        "holder",
    )
    # The bar: placements by model, then each deployment's surge on top.
    placed = [(name, n) for (kind, name), n in drawn.items() if kind != ReservationKind.DEPLOYMENT]
    parts = [(model, ReservationKind.PLACEMENT, n, "") for model, n in sorted(placed, key=lambda kv: (-kv[1], kv[0]))]
    parts += [
        (h.holder or "deployment", h.kind, drawn[h.kind, h.holder], "surge of " + ", ".join(h.models))
        for h in by_holder
        if h.kind == ReservationKind.DEPLOYMENT and drawn[h.kind, h.holder]
    ]
    segments = tuple(
        Segment(label=label, kind=kind, gpus=gpus, percent=round(100.0 * gpus / scale, 3), colour=i % PALETTE_SIZE, detail=detail)
        for i, (label, kind, gpus, detail) in enumerate(parts)
    )
    by_model = _sorted((ModelUsage(model, len(devices)) for model, devices in per_model.items()), "model")
    return QuotaUsage(team=team, limit=limit, held=held, by_model=by_model, by_holder=by_holder, segments=segments)


def quota_usages(teams: Iterable[Team]) -> dict[int, QuotaUsage]:
    """Usage of each team, keyed by team id, in two queries whatever the number of teams."""
    teams = list(teams)
    ids = [team.pk for team in teams]
    limits = dict(GpuQuota.objects.filter(team_id__in=ids).values_list("team_id", "gpus"))
    rows: dict[int, list[dict]] = defaultdict(list)
    active = (
        Reservation.objects.filter(team_id__in=ids, released_at__isnull=True)
        .values("id", "team_id", "kind", "holder", "version__model__name", "server_id", "devices")
        .order_by("id")
    )
    for row in active:
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


def _active_devices(team: Team, except_reservations: Iterable[int]):
    query = Reservation.objects.filter(team=team, released_at__isnull=True, server__isnull=False)
    except_reservations = list(except_reservations)
    if except_reservations:
        query = query.exclude(pk__in=except_reservations)
    return query.values_list("server_id", "devices")


def team_devices_held(team: Team, *, except_reservations: Iterable[int] = ()) -> set[Device]:
    """The distinct devices, (server id, GPU index), that the team's active reservations hold,
    leaving out ``except_reservations`` (ids) if given. One query.

    The quota check reads it under the team's quota row lock; elsewhere it is a snapshot.
    """
    return set(device_holders(_active_devices(team, except_reservations)))


def team_device_holders(team: Team, *, except_reservations: Iterable[int] = ()) -> Counter[Device]:
    """How many active reservations of the team hold each device. One query. This is what
    devices.devices_held needs when a plan releases devices that other reservations may share."""
    return device_holders(_active_devices(team, except_reservations))
