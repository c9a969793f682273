from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from controlplane.fleet.models import Pool, Server
from controlplane.registry.models import Model
from controlplane.serving.models import ServingConfig


def serving_config_current(model: Model) -> ServingConfig | None:
    """The newest revision, or None while the model still runs on defaults."""
    return model.serving_configs.order_by("-revision").first()


def serving_configs_of(model: Model) -> QuerySet[ServingConfig]:
    """Every revision of the model, newest first. Visibility is the model's (registry.model_get)."""
    return ServingConfig.objects.filter(model=model).select_related("created_by").order_by("-revision")


def serving_config_get(model: Model, revision) -> ServingConfig:
    return get_object_or_404(serving_configs_of(model), revision=revision)


def pool_named(name: str) -> Pool | None:
    return Pool.objects.filter(name=name).first()


def pool_has_gpus(pool: Pool | None) -> bool | None:
    """Whether the pool's servers have GPUs: None when there is no pool or it has no servers yet
    (unknown, so GPU rules are not applied), False when none of its servers has a GPU."""
    if pool is None:
        return None
    counts = list(Server.objects.filter(pool=pool).values_list("gpu_count", flat=True))
    if not counts:
        return None
    return any(count > 0 for count in counts)
