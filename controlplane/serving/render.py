"""Render the exact Triton ModelConfig JSON sent as the load override.

Triton does not persist overrides, so Switchyard re-sends this on every load. The override
replaces config.pbtxt entirely, so it carries the registry's part (name, backend, signature) as
well as the serving spec's.

The JSON follows what Triton's parser wants (core src/model_config_utils.cc JsonToModelConfig:
protobuf JsonStringToMessage, unknown fields refused):
- protobuf field names (``input``, ``data_type``, ``instance_group``), not lowerCamelCase;
- enums as their names (``"KIND_CPU"``, ``"TYPE_FP32"``, ``"DELAY"``);
- 64-bit integers (dims, versions, microseconds, priority levels) as JSON numbers. protobuf also
  accepts them as strings, but Triton's GET /v2/models/{m}/config prints them as numbers
  (ModelConfigToJson fixes them up), so numbers make the rendered config and the effective one
  compare equal, which drift detection relies on;
- defaults that Triton fills in itself are left out where leaving them out means the same
  (an empty preferred_batch_size becomes [max_batch_size] in NormalizeModelConfig; a disabled
  response cache and an empty warmup list are Triton's defaults).

Versions: a placement passes the versions it wants loaded, and they win:
``version_policy: {specific: {versions}}`` (blue-green on the same servers needs exactly
[blue, green]). With no versions (None or []), the spec's version_policy is used, and without
one Triton's default, ``latest {num_versions: 1}``, is written out explicitly.
"""
import copy

from controlplane.registry.models import TRITON_PLATFORM, Model
from controlplane.serving.models import ServingConfig

# The instance group when the spec has none. Python models run on CPU everywhere (and so hold no
# GPU quota); other backends let Triton pick the GPU when the server has one.
DEFAULT_INSTANCE_GROUP = {"python": [{"kind": "KIND_CPU", "count": 1}]}
AUTO_INSTANCE_GROUP = [{"kind": "KIND_AUTO", "count": 1}]


def render_model_config(model: Model, config: ServingConfig | None, *, versions: list[int] | None) -> dict:
    """The load override for ``model`` under ``config`` (None: defaults), loading ``versions``."""
    return render_spec(model, config.spec if config is not None else {}, versions=versions)


def render_spec(model: Model, spec: dict, *, versions: list[int] | None = None) -> dict:
    """Render a validated (normalised) spec. Nothing in ``spec`` is modified."""
    spec = copy.deepcopy(spec or {})
    rendered: dict = {"name": model.triton_name}
    if model.backend in TRITON_PLATFORM:
        rendered["platform"] = TRITON_PLATFORM[model.backend]
    rendered["backend"] = model.backend
    rendered["max_batch_size"] = spec.get("max_batch_size", model.max_batch_size)
    rendered["input"] = [_tensor(t) for t in model.inputs]
    rendered["output"] = [_tensor(t) for t in model.outputs]
    rendered["version_policy"] = _version_policy(spec.get("version_policy"), versions)
    groups = spec.get("instance_group") or DEFAULT_INSTANCE_GROUP.get(model.backend, AUTO_INSTANCE_GROUP)
    rendered["instance_group"] = [_instance_group(g) for g in groups]
    batching = spec.get("dynamic_batching")
    if batching is not None:
        rendered["dynamic_batching"] = _dynamic_batching(batching)
    if spec.get("model_warmup"):
        rendered["model_warmup"] = spec["model_warmup"]
    if (spec.get("response_cache") or {}).get("enable"):
        rendered["response_cache"] = {"enable": True}
    return rendered


def _tensor(tensor: dict) -> dict:
    # Keys in the proto's order (jsonb stores them sorted by length), for a readable override.
    ordered = {key: tensor[key] for key in ("name", "data_type", "dims") if key in tensor}
    return {**ordered, **{k: v for k, v in tensor.items() if k not in ordered}}


def _version_policy(policy: dict | None, versions: list[int] | None) -> dict:
    if versions:
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in versions):
            raise ValueError(f"versions must be positive integers, got {versions!r}")
        return {"specific": {"versions": sorted(set(versions))}}
    return policy or {"latest": {"num_versions": 1}}


def _instance_group(group: dict) -> dict:
    out = {"kind": group.get("kind", "KIND_AUTO"), "count": group.get("count", 1)}
    if group.get("gpus"):
        out["gpus"] = list(group["gpus"])
    return out


def _dynamic_batching(batching: dict) -> dict:
    out = {}
    if batching.get("preferred_batch_size"):
        out["preferred_batch_size"] = list(batching["preferred_batch_size"])
    for key in ("max_queue_delay_microseconds", "priority_levels", "default_priority_level"):
        out[key] = batching.get(key, 0)
    policy = batching.get("default_queue_policy")
    if policy:
        out["default_queue_policy"] = {
            "timeout_action": policy.get("timeout_action", "REJECT"),
            "default_timeout_microseconds": policy.get("default_timeout_microseconds", 0),
            "allow_timeout_override": policy.get("allow_timeout_override", False),
            "max_queue_size": policy.get("max_queue_size", 0),
        }
    return out
