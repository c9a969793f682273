"""Writes to GPU quotas and reservations. The quota check lives here, once, under a row lock.

The unit is a device, one GPU of one server: a team holds the distinct (server, GPU index) pairs
of its active reservations, so reservations on the same GPU hold it once.

Every reservation is inserted while its team's GpuQuota row is locked (SELECT ... FOR UPDATE),
and the devices held are read after the lock is taken. Under READ COMMITTED (Django's default on
PostgreSQL) that read sees every reservation committed by the previous lock holder, so concurrent
reservations queue up and none can push a team past its quota. Releases only shrink the set of
devices held, so they need no lock: a compare-and-set on ``released_at`` makes them idempotent.
"""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.accounts.access import authorize, authorize_platform_admin
from controlplane.accounts.models import Role, Team
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record, snapshot
from controlplane.common.errors import Conflict
from controlplane.fleet.models import Server
from controlplane.quotas.devices import devices_of
from controlplane.quotas.models import MAX_QUOTA_GPUS, GpuQuota, Reservation, ReservationKind, version_label
from controlplane.quotas.selectors import team_devices_held
from controlplane.registry.models import ModelVersion, VersionStatus

RESERVATION_FIELDS = ["gpus", "devices", "kind", "version", "server", "server_name", "holder", "description"]


class QuotaExceeded(Conflict):
    """The reservation would take the team past its GPU quota (HTTP 409, field "gpus").

    ``held`` is the distinct devices the team holds, ``needed`` the devices asked for that it
    does not hold yet. 409 rather than 403: the caller may do this, just not now; releasing GPUs
    or a larger quota makes the same request succeed.
    """

    def __init__(self, *, team: Team, limit: int, held: int, needed: int, subject: str):
        self.team, self.limit, self.held, self.needed = team, limit, held, needed
        unit = "GPU" if limit == 1 else "GPUs"
        super().__init__(
            "gpus",
            f"team {team.slug} would hold {held + needed} of {limit} {unit}: {subject} needs {needed} new on top of {held} held",
        )


def _gpu_count(value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_QUOTA_GPUS:
        raise ValidationError({"gpus": f"Give a whole number of GPUs from {minimum} to {MAX_QUOTA_GPUS}."})
    return value


def _locked_quota(team: Team) -> GpuQuota:
    """The team's quota row, locked until the transaction ends; created (at 0 GPUs) if missing.

    INSERT ... ON CONFLICT DO NOTHING makes concurrent first uses safe: one insert wins, the
    others wait for it and then lock the same row. Creating the row is not audited, because a
    missing row already means 0 GPUs: nothing changes.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lock the quota inside the transaction that uses it")
    quota = GpuQuota.objects.select_for_update().filter(team=team).first()
    if quota is None:
        GpuQuota.objects.bulk_create([GpuQuota(team=team, gpus=0)], ignore_conflicts=True)
        quota = GpuQuota.objects.select_for_update().get(team=team)
    return quota


def quota_set(*, actor: Actor, team: Team, gpus: int, reason: str = "") -> GpuQuota:
    """Set a team's GPU quota. Platform admins only.

    Lowering a quota below what the team holds is allowed: nothing already running is evicted,
    and reservations that add a device are refused until the team is back under its quota.
    """
    authorize_platform_admin(actor)
    gpus = _gpu_count(gpus, minimum=0)
    with transaction.atomic():
        quota = _locked_quota(team)
        if quota.gpus == gpus:
            return quota
        before = snapshot(quota, ["gpus"])
        quota.gpus = gpus
        quota.save(update_fields=["gpus", "updated_at"])
        audit_record(actor=actor, action="quota.set", obj=quota, team=team, before=before, after=snapshot(quota, ["gpus"]), reason=reason)
    return quota


def _check_devices(devices, server: Server) -> list[int]:
    if not isinstance(devices, (list, tuple, set, frozenset)) or not devices:
        raise ValidationError({"devices": "List the GPU indexes to reserve on the server, such as [0, 1]."})
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in devices):
        raise ValidationError({"devices": "GPU indexes are integers of 0 or more."})
    if isinstance(devices, (list, tuple)) and len(set(devices)) != len(devices):
        raise ValidationError({"devices": "A GPU index is listed twice."})
    missing = sorted(d for d in devices if d >= server.gpu_count)
    if missing:
        has = f"{server.gpu_count} GPU{'s' if server.gpu_count != 1 else ''}" if server.gpu_count else "no GPUs"
        raise ValidationError({"devices": f"{server.name} has {has}, so no GPU {', '.join(map(str, missing))}."})
    return sorted(devices)


def _check_reservation(team: Team, kind: str, version: ModelVersion | None, server: Server | None, devices, holder: str):
    if kind not in ReservationKind.values:
        raise ValidationError({"kind": f"Use one of {', '.join(ReservationKind.values)}."})
    if version is None:
        raise ValidationError({"version": "Name the model version that will use the GPUs."})
    if version.model.team_id != team.pk:
        raise ValidationError({"version": f"{version_label(version)} does not belong to team {team.slug}."})
    if version.status != VersionStatus.READY:
        raise ValidationError({"version": f"{version_label(version)} is still registering."})
    if server is None:
        raise ValidationError({"server": "Name the server whose GPUs are reserved (a deployment's surge too)."})
    if kind == ReservationKind.DEPLOYMENT and not holder:
        raise ValidationError({"holder": 'A deployment\'s surge needs its holder, such as "deployment 42".'})
    return _check_devices(devices, server)


def quota_reserve(
    *,
    actor: Actor,
    team: Team,
    kind: str,
    server: Server | None,
    devices: list[int],
    version: ModelVersion | None = None,
    holder: str = "",
    description: str = "",
) -> Reservation:
    """Reserve GPUs ``devices`` (indexes) of ``server`` for a team, or raise QuotaExceeded (409)
    naming the numbers.

    The check: the distinct devices the team holds, with these added, stay within its quota.
    Devices the team holds already (through another reservation: blue beside green on the same
    server, another model on the same GPU, a deployment's surge and green's own placement) cost
    nothing, so a reservation that adds no device passes even when a lowered quota left the team
    over it. Zero-GPU placements (KIND_CPU) need no reservation: callers skip the call when
    devices_for_instance_groups() is empty. Deployers of the team, platform admins and system
    actors (workers) may reserve.
    """
    authorize(actor, team, Role.DEPLOYER)
    devices = _check_reservation(team, kind, version, server, devices, holder)
    reservation = Reservation(
        team=team,
        gpus=len(devices),
        devices=devices,
        kind=kind,
        version=version,
        server=server,
        server_name=server.name,
        holder=holder,
        description=description,
    )
    reservation.full_clean(exclude=["team", "version", "server"])
    with transaction.atomic():
        quota = _locked_quota(team)
        held = team_devices_held(team)  # after the lock: sees every reservation committed before it
        new = devices_of(server.pk, devices) - held
        if new and len(held) + len(new) > quota.gpus:
            subject = version_label(version) + (f" for {holder}" if holder else "") + f" on {server.name}"
            raise QuotaExceeded(team=team, limit=quota.gpus, held=len(held), needed=len(new), subject=subject)
        reservation.save()
        after = snapshot(reservation, RESERVATION_FIELDS) | {"team_held": len(held) + len(new), "team_quota": quota.gpus}
        audit_record(actor=actor, action="quota.reserve", obj=reservation, team=team, after=after, reason=description)
    return reservation


def quota_release(*, actor: Actor, reservation: Reservation, reason: str = "") -> Reservation:
    """Release a reservation. Releasing one that is already released is a quiet no-op."""
    team = reservation.team
    authorize(actor, team, Role.DEPLOYER)
    with transaction.atomic():
        now = timezone.now()
        released = Reservation.objects.filter(pk=reservation.pk, released_at__isnull=True).update(released_at=now)
        reservation.refresh_from_db(fields=["released_at"])
        if released:
            audit_record(
                actor=actor,
                action="quota.release",
                obj=reservation,
                team=team,
                before={"released_at": None},
                after=snapshot(reservation, ["released_at"]),
                reason=reason,
            )
    return reservation
