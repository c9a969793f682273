from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from controlplane.common.validators import validate_dns_name
from controlplane.registry.tensors import normalize_tensors


class Backend(models.TextChoices):
    PYTHON = "python"
    ONNXRUNTIME = "onnxruntime"
    PYTORCH = "pytorch"
    TENSORRT = "tensorrt"
    TENSORFLOW = "tensorflow"


# The file (or, ending in "/", the directory) each backend needs inside a version directory.
REQUIRED_ARTIFACT = {
    Backend.PYTHON: "model.py",
    Backend.ONNXRUNTIME: "model.onnx",
    Backend.PYTORCH: "model.pt",
    Backend.TENSORRT: "model.plan",
    Backend.TENSORFLOW: "model.savedmodel/",
}
# Triton's `platform` where a backend has one (TensorRT plans and TF SavedModels).
TRITON_PLATFORM = {Backend.TENSORRT: "tensorrt_plan", Backend.TENSORFLOW: "tensorflow_savedmodel"}
MAX_BATCH_SIZE_LIMIT = 65536


class Model(models.Model):
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="models")
    name = models.CharField(max_length=63, validators=[validate_dns_name])
    backend = models.CharField(max_length=16, choices=Backend.choices)
    max_batch_size = models.IntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(MAX_BATCH_SIZE_LIMIT)]
    )
    inputs = models.JSONField()
    outputs = models.JSONField()
    description = models.TextField(blank=True, max_length=2000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__slug", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="model_unique_name_per_team")]

    def __str__(self):
        return f"{self.team.slug}/{self.name}"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("model-detail", args=[self.pk])

    @property
    def triton_name(self) -> str:
        """The name in Triton's repository. Team-qualified, because names are unique only per team."""
        return f"{self.team.slug}.{self.name}"

    @property
    def required_artifact(self) -> str:
        return REQUIRED_ARTIFACT[self.backend]

    def clean(self):
        errors = {}
        for field in ("inputs", "outputs"):
            try:
                setattr(self, field, normalize_tensors(getattr(self, field), field))
            except ValidationError as exc:
                errors.update(exc.message_dict)
        if errors:
            raise ValidationError(errors)


class VersionStatus(models.TextChoices):
    REGISTERING = "registering"  # number claimed, artifact being written to S3
    READY = "ready"  # validated and stored; immutable from here on


class ModelVersion(models.Model):
    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.REGISTERING)
    source_uri = models.CharField(max_length=1024, blank=True, help_text="Where the artifact came from, if not uploaded.")
    artifact_uri = models.CharField(max_length=1024, help_text="Where Triton loads it from.")
    checksum = models.CharField(max_length=71, help_text="sha256 over the sorted file manifest.")
    size_bytes = models.BigIntegerField(default=0)
    files = models.JSONField(default=list, help_text="[{path, size, sha256}] relative to the version directory.")
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_id", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="version_unique_per_model")]

    def __str__(self):
        return f"{self.model} v{self.version}"


LABEL_NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
RESERVED_LABELS = {"latest"}  # computed: the highest ready version


class VersionLabel(models.Model):
    """A movable name such as stable or canary pointing at one version. Moving it is a release."""

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="labels")
    name = models.CharField(max_length=31)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="labels")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="label_unique_per_model")]

    def __str__(self):
        return f"{self.model}@{self.name}"


class LabelMove(models.Model):
    """One change of a label: created (from is null), moved, or deleted (to is null)."""

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="label_moves")
    label = models.CharField(max_length=31)
    from_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150)
    source = models.CharField(max_length=16)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["model", "label"])]

    def __str__(self):
        return f"{self.model}@{self.label}: {self.from_version_id} -> {self.to_version_id}"
