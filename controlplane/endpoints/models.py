"""Endpoints: the stable names clients call through the gateway, and what the gateway reports.

An Endpoint belongs to a team and serves one model. A label-bound endpoint follows one of the
model's labels (its single variant is whatever version the label points at); a pinned endpoint
lists its variants. Either may mirror a share of its requests to a shadow version. Which servers a
variant uses is never stored: the routing table takes them from READY placement targets.

The public name, which `tritonclient` passes as `model_name`, is `<team>.<endpoint>`: the team
slug makes it unambiguous across teams, the same scheme as Triton model names.
"""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from controlplane.common.validators import validate_dns_name


class EndpointKind(models.TextChoices):
    LABEL = "label", "follows a label"
    PINNED = "pinned", "pinned variants"


class Access(models.TextChoices):
    OPEN = "open", "open (trusted network)"
    TOKEN = "token", "token with the infer scope"


MAX_WEIGHT = 1_000_000  # gateway.table's bound


class Endpoint(models.Model):
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="endpoints")
    name = models.CharField(max_length=63, validators=[validate_dns_name])
    model = models.ForeignKey("registry.Model", on_delete=models.PROTECT, related_name="endpoints")
    kind = models.CharField(max_length=8, choices=EndpointKind.choices)
    label = models.CharField(max_length=31, blank=True, help_text="For a label-bound endpoint: the label it follows.")
    access = models.CharField(max_length=8, choices=Access.choices, default=Access.TOKEN)
    sticky_header = models.CharField(max_length=64, blank=True, help_text="Hash this request header into sticky buckets.")
    sticky_cookie = models.CharField(max_length=64, blank=True, help_text="Or this cookie.")
    shadow_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="A version that receives a mirrored copy of some requests; its answers are only compared.",
    )
    shadow_percent = models.FloatField(default=0, validators=[MinValueValidator(0), MaxValueValidator(100)])
    shadow_rtol = models.FloatField(default=1e-5, validators=[MinValueValidator(0)])
    shadow_atol = models.FloatField(default=1e-6, validators=[MinValueValidator(0)])
    description = models.TextField(blank=True, max_length=2000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="endpoint_unique_name_per_team"),
            models.CheckConstraint(condition=Q(kind__in=EndpointKind.values), name="endpoint_kind_valid"),
            models.CheckConstraint(condition=Q(access__in=Access.values), name="endpoint_access_valid"),
            models.CheckConstraint(
                condition=~(Q(kind="label") & Q(label="")), name="endpoint_label_kind_has_label"
            ),
            models.CheckConstraint(
                condition=Q(sticky_header="") | Q(sticky_cookie=""), name="endpoint_one_sticky_key"
            ),
        ]

    def __str__(self):
        return self.public_name

    @property
    def public_name(self) -> str:
        return f"{self.team.slug}.{self.name}"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("endpoint-detail", args=[self.pk])


class EndpointVariant(models.Model):
    """One variant of a pinned endpoint: a version of the endpoint's model, with a traffic weight.
    `position` orders the variants; sticky buckets are handed out in that order."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=63)
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="+")
    weight = models.PositiveIntegerField(validators=[MaxValueValidator(MAX_WEIGHT)])
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["endpoint", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "name"], name="endpoint_variant_unique_name"),
        ]

    def __str__(self):
        return f"{self.endpoint} variant {self.name}"


class RoutingTableState(models.Model):
    """The table last published: a single row (pk 1). `version` grows by one each time the built
    table differs from the last one (`digest` over its content without version and time)."""

    version = models.PositiveBigIntegerField(default=0)
    digest = models.CharField(max_length=64, blank=True)
    body = models.JSONField(default=dict, help_text="The published table, as gateway.table reads it.")
    published_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"routing table v{self.version}"


class GatewayReplica(models.Model):
    """One gateway worker process as it last reported in. A process, not a host: each worker of
    `switchyard gateway --workers N` holds and serves its own copy of the table. An observation,
    like a probe result, so it is not audited."""

    replica_id = models.CharField(max_length=128, unique=True)
    address = models.CharField(max_length=255, blank=True)
    table_version = models.PositiveBigIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField()
    stats = models.JSONField(default=dict, blank=True, help_text="What it said of itself: requests, in flight, table source.")
    trips = models.JSONField(
        default=list, blank=True,
        help_text="Guard trips it reported (gateway/guard.py), each as reported plus received_at; the newest kept.",
    )

    class Meta:
        ordering = ["replica_id"]

    def __str__(self):
        return f"gateway replica {self.replica_id}"
