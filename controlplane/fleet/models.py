from django.core.validators import MaxValueValidator
from django.db import models

from controlplane.common.validators import validate_dns_name
from controlplane.fleet.validators import (
    validate_grpc_address,
    validate_http_url,
    validate_labels,
)


class Pool(models.Model):
    """A group of servers that models can be placed on. Pools are shared by all teams."""

    name = models.CharField(max_length=63, unique=True, validators=[validate_dns_name])
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ServerStatus(models.TextChoices):
    UNKNOWN = "unknown"  # never probed
    UP = "up"  # live and ready
    NOT_READY = "not_ready"  # live, but not ready
    DOWN = "down"  # could not be reached, or answered with an error


class Server(models.Model):
    """One Triton server. The first block is what an admin registers; the second what the prober saw."""

    name = models.CharField(max_length=63, unique=True, validators=[validate_dns_name])
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="servers")
    http_url = models.CharField(max_length=500, validators=[validate_http_url])
    grpc_url = models.CharField(max_length=260, blank=True, validators=[validate_grpc_address])
    metrics_url = models.CharField(max_length=500, blank=True, validators=[validate_http_url])
    gpu_type = models.CharField(max_length=64, blank=True)
    gpu_count = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(64)])
    labels = models.JSONField(default=dict, blank=True, validators=[validate_labels])
    created_at = models.DateTimeField(auto_now_add=True)
    draining_since = models.DateTimeField(
        null=True, blank=True, help_text="Set when an admin removes the server with drain: it goes once its placements are unloaded.",
    )

    status = models.CharField(max_length=16, choices=ServerStatus.choices, default=ServerStatus.UNKNOWN)
    is_live = models.BooleanField(null=True, blank=True)
    is_ready = models.BooleanField(null=True, blank=True)
    triton_version = models.CharField(max_length=32, blank=True)
    extensions = models.JSONField(default=list, blank=True)
    repository_index = models.JSONField(default=list, blank=True, help_text="[{name, version, state, reason}]")
    last_probe_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["pool__name", "name"]

    def __str__(self):
        return self.name

    @property
    def loaded_models(self) -> list[dict]:
        return [entry for entry in self.repository_index if entry.get("state")]

