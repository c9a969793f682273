"""Deployments: moving an endpoint from blue (the version it serves) to green, step by step.

A Deployment is the desired rollout and where it stands; the state machine is `machine.py`. Each
transition is a compare-and-set on `state` with its audit event and a DeploymentTransition row
in the same transaction. Gate evaluations are stored one row each, so people can see why a step
passed, paused or failed.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q

from controlplane.deployments.machine import ACTIVE, State


class Strategy(models.TextChoices):
    ALL_AT_ONCE = "all_at_once", "all at once (blue-green)"
    CANARY = "canary", "canary"
    LINEAR = "linear", "linear"
    STEPS = "steps", "explicit steps"


class PlacementMode(models.TextChoices):
    NEW_SERVERS = "new_servers", "new servers (separate capacity)"
    SAME_SERVERS = "same_servers", "same servers (beside blue)"


# The endpoint is held by one deployment at a time. A succeeded one no longer holds it: its label
# already moved, and its fast rollback is refused by this same constraint if another one started.
HOLDING = sorted(s.value for s in ACTIVE if s != State.SUCCEEDED)
# Green takes traffic through the routing table's deployment override in these states.
TRAFFIC_STATES = sorted(s.value for s in (
    State.SHIFTING, State.BAKING, State.ANALYZING, State.PAUSED, State.AWAITING_APPROVAL, State.PROMOTING,
    State.ROLLING_BACK,
))


class Deployment(models.Model):
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="deployments")
    endpoint = models.ForeignKey("endpoints.Endpoint", on_delete=models.PROTECT, related_name="deployments")
    model = models.ForeignKey("registry.Model", on_delete=models.PROTECT, related_name="deployments")
    blue_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="+")
    green_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="+")
    target_label = models.CharField(max_length=31, blank=True, help_text="The label green was named by, if any.")
    strategy = models.CharField(max_length=16, choices=Strategy.choices)
    steps = models.JSONField(help_text='[{"percent": 10, "bake_s": 60}, ...], the last one at 100.')
    placement_mode = models.CharField(max_length=16, choices=PlacementMode.choices)
    servers = models.JSONField(default=list, help_text="[{id, name}] green is loaded on.")
    gates = models.JSONField(help_text="The validated gates (gates.Gates as a dict).")
    approval_required = models.BooleanField(default=False)
    deadline_at = models.DateTimeField(null=True, blank=True)
    rollback_window_s = models.PositiveIntegerField(default=0)
    start_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, max_length=2000)
    plan = models.JSONField(default=dict, help_text="The plan as shown at creation (plan.Plan as a dict).")

    state = models.CharField(max_length=20, default=State.PENDING)
    state_changed_at = models.DateTimeField()
    cause = models.CharField(max_length=16, blank=True, help_text="Why a rollback started (machine.Cause).")
    status_text = models.TextField(blank=True, help_text="What it waits for, or why it paused or failed.")
    step_index = models.IntegerField(default=-1, help_text="The current traffic step; -1 before the first.")
    step_started_at = models.DateTimeField(null=True, blank=True)
    traffic_percent = models.PositiveSmallIntegerField(default=0, help_text="Green's share in the routing table.")
    table_version = models.PositiveBigIntegerField(default=0, help_text="The routing table that holds the traffic.")
    failed_evaluations = models.PositiveIntegerField(default=0, help_text="Failed evaluations in a row.")
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="When a worker looks at it again.")
    green_placement = models.ForeignKey(
        "placements.Placement", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    blue_placements = models.JSONField(default=list, help_text="Ids of the placements blue ran in at validation.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint"], condition=Q(state__in=HOLDING), name="deployment_one_active_per_endpoint",
                violation_error_message="The endpoint already has an active deployment.",
            ),
            models.CheckConstraint(condition=Q(state__in=[s.value for s in State]), name="deployment_state_valid"),
            models.CheckConstraint(condition=Q(traffic_percent__lte=100), name="deployment_traffic_percent_max"),
        ]
        indexes = [
            models.Index(fields=["state", "next_run_at"], name="deployment_by_state"),
            models.Index(fields=["team", "-id"], name="deployment_by_team"),
        ]

    def __str__(self):
        return f"deployment {self.pk} of {self.model.name} v{self.blue_version.version} → v{self.green_version.version}"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("deployment-detail", args=[self.pk])


class DeploymentTransition(models.Model):
    """One step of a deployment's history: from, to, the event, who or what caused it, and why."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20)
    event = models.CharField(max_length=20)
    actor_name = models.CharField(max_length=150)
    source = models.CharField(max_length=16)
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["deployment", "id"]

    def __str__(self):
        return f"{self.deployment_id}: {self.from_state or '-'} → {self.to_state}"


class Verdict(models.TextChoices):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no_data"


class GateEvaluation(models.Model):
    """One gate read once: its value, the limit, the requests it rests on, the window and the verdict.
    An observation of the metrics, not a change of state: not audited (the transitions it causes are)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="evaluations")
    step_index = models.IntegerField()
    gate = models.CharField(max_length=80)
    value = models.FloatField(null=True, blank=True)
    limit = models.FloatField()
    requests = models.FloatField(default=0)
    window_s = models.PositiveIntegerField()
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    detail = models.TextField(blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["deployment", "id"]
        indexes = [models.Index(fields=["deployment", "-id"], name="gate_eval_by_deployment")]

    def __str__(self):
        return f"{self.gate} {self.verdict} for deployment {self.deployment_id}"
