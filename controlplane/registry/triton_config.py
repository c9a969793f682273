"""Render the Triton ModelConfig that Switchyard sends as the load override.

Triton does not persist overrides, so this is re-sent on every load. Field names follow
Triton's protobuf JSON form (``input``, ``data_type``, ``dims``).
"""
from controlplane.registry.models import TRITON_PLATFORM, Model


def render_model_config(model: Model, *, versions: list[int]) -> dict:
    config = {
        "name": model.triton_name,
        "backend": model.backend,
        "max_batch_size": model.max_batch_size,
        "input": [dict(t) for t in model.inputs],
        "output": [dict(t) for t in model.outputs],
        "version_policy": {"specific": {"versions": sorted(versions)}},
        "instance_group": [{"kind": "KIND_CPU" if model.backend == "python" else "KIND_AUTO", "count": 1}],
    }
    if model.backend in TRITON_PLATFORM:
        config["platform"] = TRITON_PLATFORM[model.backend]
    return config
