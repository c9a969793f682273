"""GPU quotas and the reservations that count against them.

The unit is a physical device, one GPU of one server: a team holds the distinct (server, GPU
index) pairs that its active reservations name (see quotas/devices.py).

A team without a GpuQuota row has a quota of 0 GPUs: nothing runs on GPUs until a platform
admin says so. The row is created on first use (see services._locked_quota), never by a
signal, so creating a team does not need to know about quotas.
"""
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from controlplane.quotas.devices import indexes_text

MAX_QUOTA_GPUS = 100_000  # far above any fleet; keeps typos like 1e9 out of the database


def version_label(version) -> str:
    """How messages name a version: "fraud-scorer v3" (the team is said elsewhere)."""
    return f"{version.model.name} v{version.version}"


class GpuQuota(models.Model):
    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="gpu_quota")
    gpus = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(MAX_QUOTA_GPUS)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(gpus__gte=0), name="gpuquota_gpus_not_negative")]

    def __str__(self):
        return f"GPU quota of {self.team.slug}"


class ReservationKind(models.TextChoices):
    PLACEMENT = "placement"  # a version loaded on a server
    DEPLOYMENT = "deployment"  # the surge: a blue-green green on top of blue, until blue retires


class Reservation(models.Model):
    """GPUs of one server that a team holds. Active while ``released_at`` is null; released rows
    are kept as history.

    ``devices`` are the GPU indexes held on ``server``, sorted; ``gpus`` is their number, kept for
    display and history. Reservations of a team that name the same device hold it once. A
    reservation whose server was removed holds nothing, as its devices no longer exist.

    ``version`` is PROTECT: versions are immutable records and a reservation's history must keep
    naming one. ``server`` is SET_NULL with ``server_name`` kept as a copy, so decommissioning a
    server is not blocked by old reservations and the history still reads correctly.
    """

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="gpu_reservations")
    gpus = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_QUOTA_GPUS)], help_text="How many devices: len(devices)."
    )
    devices = models.JSONField(default=list, blank=True, help_text="The GPU indexes held on the server, sorted.")
    kind = models.CharField(max_length=16, choices=ReservationKind.choices)
    version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="gpu_reservations"
    )
    server = models.ForeignKey(
        "fleet.Server", null=True, blank=True, on_delete=models.SET_NULL, related_name="gpu_reservations"
    )
    server_name = models.CharField(max_length=63, blank=True)
    holder = models.CharField(max_length=100, blank=True, help_text='Who holds it, such as "deployment 42".')
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(gpus__gt=0), name="reservation_gpus_positive"),
            models.CheckConstraint(condition=Q(kind__in=ReservationKind.values), name="reservation_kind_valid"),
        ]
        indexes = [
            models.Index(fields=["team"], condition=Q(released_at__isnull=True), name="reservation_active_by_team"),
        ]

    def __str__(self):
        # Name the version only when it is already loaded: str() must not cost a query.
        version = self.version if self._meta.get_field("version").is_cached(self) else None
        subject = version_label(version) if version else self.holder or self.kind
        if version and self.holder:
            subject = f"{subject} for {self.holder}"
        where = f" on {self.server_name}" if self.server_name else ""
        state = "" if self.released_at is None else " (released)"
        which = f" ({indexes_text(self.devices)})" if self.devices else ""
        return f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}{which} for {subject}{where}{state}"

    @property
    def is_active(self) -> bool:
        return self.released_at is None
