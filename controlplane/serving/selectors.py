from controlplane.registry.models import Model
from controlplane.serving.models import ServingConfig


def serving_config_current(model: Model) -> ServingConfig | None:
    """The newest revision, or None while the model still runs on defaults."""
    return model.serving_configs.order_by("-revision").first()
