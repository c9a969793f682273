from django.conf import settings
from django.db import models
from django.db.models import Q

from controlplane.notifications.validation import MAX_URL, url_problem


class Event(models.TextChoices):
    """What a deployment tells its webhooks about."""

    STARTED = "started"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back", "rolled back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TEST_EVENT = "test"  # POST /api/v1/webhooks/{id}/test/: sent whatever the webhook's events are
DELIVERY_EVENTS = [*Event.values, TEST_EVENT]


def all_events() -> list[str]:
    return list(Event.values)


def validate_url(value) -> None:
    from django.core.exceptions import ValidationError

    problem = url_problem(value)
    if problem:
        raise ValidationError(problem)


class Webhook(models.Model):
    """A receiver of a team's deployment notifications: every endpoint of the team, or one.

    ``secret`` signs each delivery (HMAC-SHA256; see signing.py). Unlike an API token it is
    stored as it is, because the server must sign with it, not only check it: it is shown once,
    in the response that creates the webhook, and never returned or audited again. Anyone who
    can read this table can forge deliveries, as with any shared HMAC secret.
    """

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="webhooks")
    # An endpoint's webhooks go with it: they describe that endpoint's rollouts only.
    endpoint = models.ForeignKey(
        "endpoints.Endpoint", null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks",
        help_text="Only this endpoint's deployments; empty for every endpoint of the team.",
    )
    name = models.CharField(max_length=100, blank=True, help_text="Such as #ml-deploys, to tell webhooks apart.")
    # Not a URLField: Django's URL validator refuses single-label hosts (http://chat-bridge:8080/),
    # which are normal on-prem.
    url = models.CharField(max_length=MAX_URL, validators=[validate_url])
    secret = models.CharField(max_length=100, editable=False)
    events = models.JSONField(default=all_events, help_text="The events sent, a subset of Event.")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team__slug", "id"]

    def __str__(self):
        label = f" ({self.name})" if self.name else ""
        return f"webhook {self.pk} of {self.team.slug}{label}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One notification to one webhook, and every attempt to send it (``log``).

    A record of I/O, not a change of state: writing it is not audited. ``attempts`` counts
    claimed attempts; ``next_attempt_at`` is when the next one is due (null once finished).
    """

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    log = models.JSONField(default=list, help_text="One entry per attempt: attempt, at, status_code, error, duration_ms.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notif_delivery_due")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="notif_delivery_status_valid"),
        ]

    def __str__(self):
        return f"delivery {self.pk} ({self.event}) to webhook {self.webhook_id}"
