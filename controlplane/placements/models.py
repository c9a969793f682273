"""Placements: a model's versions and a config revision, loaded on a set of Triton servers.

A Placement is the desired state; each PlacementTarget is that state on one server, with what
Switchyard last saw there. A model has at most one active target per server (a database
constraint): a newer placement on the same server replaces the older target.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q


class TargetState(models.TextChoices):
    PENDING = "pending"  # waiting for the apply task
    LOADING = "loading"  # a load is in flight (claimed by an apply or the reconciler)
    READY = "ready"  # every wanted version READY on Triton with our config
    FAILED = "failed"  # Triton refused the load, or did not answer; error says why
    UNLOADING = "unloading"  # removal asked for; the unload is in flight
    REMOVED = "removed"  # unloaded, or replaced by a newer placement on the same server
    STUCK = "stuck"  # LOADING or UNLOADING on Triton for longer than the stuck timeout


ACTIVE_STATES = [s for s in TargetState.values if s != TargetState.REMOVED]
RETRYABLE_STATES = [TargetState.FAILED, TargetState.STUCK]


class Drift(models.TextChoices):
    NONE = "", "in sync"
    MISSING = "missing", "missing"  # wanted, but no wanted version is loaded (the server restarted, say)
    EXTRA = "extra", "extra"  # loaded, but no active placement wants it there
    WRONG_VERSION = "wrong_version", "wrong version"  # loaded, but not exactly the wanted versions are READY
    WRONG_CONFIG = "wrong_config", "wrong config"  # the wanted versions are READY with another config
    UNREACHABLE = "unreachable", "unreachable"  # the server did not answer, so nothing is known


class Placement(models.Model):
    model = models.ForeignKey("registry.Model", on_delete=models.PROTECT, related_name="placements")
    versions = models.JSONField(help_text="Sorted version numbers, each a READY version of the model.")
    config = models.ForeignKey(
        "serving.ServingConfig", null=True, blank=True, on_delete=models.PROTECT, related_name="placements",
        help_text="The revision rendered; null when the model had none (Triton defaults).",
    )
    rendered_config = models.JSONField(help_text="The exact ModelConfig sent to Triton on every (re)load.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True, help_text="Set when it is removed or wholly replaced.")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["model"], condition=Q(removed_at__isnull=True), name="placement_active_by_model")]

    def __str__(self):
        return f"placement {self.pk} of {self.model.triton_name} v{','.join(map(str, self.versions))}"

    @property
    def is_active(self) -> bool:
        return self.removed_at is None

    @property
    def config_revision(self) -> int | None:
        return self.config.revision if self.config_id else None


class PlacementTarget(models.Model):
    placement = models.ForeignKey(Placement, on_delete=models.PROTECT, related_name="targets")
    # A copy of placement.model, so that "one active target per (model, server)" is a constraint.
    model = models.ForeignKey("registry.Model", on_delete=models.PROTECT, related_name="+")
    # SET_NULL with a copy of the name, as for reservations: deregistering a server is not blocked,
    # and the reconciler retires targets whose server is gone.
    server = models.ForeignKey("fleet.Server", null=True, on_delete=models.SET_NULL, related_name="placement_targets")
    server_name = models.CharField(max_length=63)
    state = models.CharField(max_length=16, choices=TargetState.choices, default=TargetState.PENDING)
    state_changed_at = models.DateTimeField()
    attempt = models.PositiveIntegerField(default=0, help_text="Bumped on every claim; results of older attempts are dropped.")
    error = models.TextField(blank=True, help_text="Triton's text for the last failure, or why the target is stuck.")
    drift = models.CharField(max_length=16, choices=Drift.choices, default=Drift.NONE, blank=True)
    drift_detail = models.TextField(blank=True)
    # While LOADING: the loading worker renews this every few seconds; once it has passed, that
    # worker is gone, and the reconciler may load again as soon as Triton is idle with the model.
    lease_until = models.DateTimeField(null=True, blank=True)
    loaded_at = models.DateTimeField(null=True, blank=True)
    load_seconds = models.FloatField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    gpus = models.PositiveIntegerField(default=0)
    reservation = models.ForeignKey(
        "quotas.Reservation", null=True, blank=True, on_delete=models.PROTECT, related_name="placement_targets"
    )
    replaced_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["server_name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "server"], condition=~Q(state="removed"), name="placement_target_one_active_per_server"
            ),
            models.CheckConstraint(condition=Q(state__in=TargetState.values), name="placement_target_state_valid"),
        ]
        indexes = [models.Index(fields=["server"], condition=~Q(state="removed"), name="placement_target_active")]

    def __str__(self):
        return f"placement {self.placement_id} on {self.server_name}"

    @property
    def is_active(self) -> bool:
        return self.state != TargetState.REMOVED

    def lease_expired(self, now, *, fallback_s: float) -> bool:
        """Whether the worker that claimed this target stopped renewing its lease (it died). A
        claim without a lease (made before leases existed) counts as expired after ``fallback_s``."""
        if self.lease_until is not None:
            return self.lease_until < now
        return (now - self.state_changed_at).total_seconds() > fallback_s


class ReconcileRun(models.Model):
    """What one reconciler pass saw and did. An observation log, not a change of state: the
    changes it makes are audited on the targets themselves. Old runs are pruned."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    servers = models.PositiveIntegerField(default=0)
    targets = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, help_text="{reapplied, adopted, stuck, extra, unreachable, removed}")

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"reconcile run {self.pk} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class TargetSample(models.Model):
    """What Triton last said about one target: its versions and cumulative statistics, taken by
    the periodic sampler so that no web request waits on Triton. One row per target, overwritten
    at each sample: an observation like ReconcileRun, not a change of state, so not audited."""

    target = models.OneToOneField(PlacementTarget, primary_key=True, on_delete=models.CASCADE, related_name="sample")
    taken_at = models.DateTimeField()
    loaded_at = models.DateTimeField(null=True, blank=True, help_text="The target's loaded_at when taken: counters restart at each load.")
    states = models.JSONField(default=list, help_text="Triton's repository index rows for the model.")
    stats = models.JSONField(null=True, blank=True, help_text="This sample's cumulative statistics (insight.StatsSample).")
    previous = models.JSONField(null=True, blank=True, help_text="The sample before, of the same load, for rates.")
    error = models.TextField(blank=True)

    def __str__(self):
        return f"sample of {self.target} at {self.taken_at:%H:%M:%S}"
