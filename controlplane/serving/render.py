"""Render the exact Triton ModelConfig JSON sent as the load override.

Triton does not persist overrides, so Switchyard re-sends this on every load. Field names follow
Triton's protobuf JSON form (``input``, ``data_type``, ``dims``, ``instance_group`` ...).
"""
from controlplane.registry.models import TRITON_PLATFORM, Model
from controlplane.serving.models import ServingConfig


def render_model_config(model: Model, config: ServingConfig | None, *, versions: list[int]) -> dict:
    spec = dict(config.spec) if config is not None else {}
    rendered = {
        "name": model.triton_name,
        "backend": model.backend,
        "max_batch_size": spec.pop("max_batch_size", model.max_batch_size),
        "input": [dict(t) for t in model.inputs],
        "output": [dict(t) for t in model.outputs],
        "version_policy": {"specific": {"versions": sorted(versions)}},
        "instance_group": [{"kind": "KIND_CPU" if model.backend == "python" else "KIND_AUTO", "count": 1}],
    }
    if model.backend in TRITON_PLATFORM:
        rendered["platform"] = TRITON_PLATFORM[model.backend]
    spec.pop("version_policy", None)  # placements decide which versions are loaded
    rendered.update(spec)
    return rendered
