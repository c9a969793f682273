from django.conf import settings
from django.db import models


class ServingConfig(models.Model):
    """One immutable revision of the Triton settings Switchyard owns for a model.

    ``spec`` holds only the owned fields (batching, instance groups, version policy, warm-up,
    response cache), already validated and normalised. The newest revision is the current one;
    rolling back writes a new revision equal to an old one, so history only grows.
    """

    model = models.ForeignKey("registry.Model", on_delete=models.PROTECT, related_name="serving_configs")
    revision = models.PositiveIntegerField()
    spec = models.JSONField()
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_id", "-revision"]
        constraints = [models.UniqueConstraint(fields=["model", "revision"], name="serving_config_unique_revision")]

    def __str__(self):
        return f"{self.model} config r{self.revision}"
