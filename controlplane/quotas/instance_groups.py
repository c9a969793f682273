"""Which GPUs of one server a Triton ``instance_group`` occupies. Pure: no ORM, no I/O.

The quota counts physical devices, not instances, and follows how Triton itself resolves the
groups (NormalizeInstanceGroup in triton-inference-server/core, model_config_utils.cc):

- KIND_GPU with ``gpus`` occupies exactly those GPU indexes. Without ``gpus`` Triton puts the
  group's instances on *every* GPU of the server, so it occupies all of them (0..gpu_count-1).
- KIND_CPU occupies none.
- KIND_AUTO is KIND_GPU on a server with GPUs and KIND_CPU on one without. So is a missing
  ``kind``, and so is an empty or missing ``instance_group`` (Triton's default: one KIND_AUTO
  group).
- KIND_MODEL lets the model place its instances on whichever GPU it likes: it is counted as
  KIND_AUTO, so a config cannot dodge the quota by leaving the choice to the model.
- ``count`` does not matter: instances share their devices. Groups on the same GPU, and
  versions loaded side by side (Triton starts every group once per loaded version), occupy it
  once: a same-servers green costs GPU memory, not devices.

Refused, naming the field as serving configs do: a listed index the server does not have
(``instance_group[i].gpus``; Triton would fail a KIND_GPU load, and would quietly run a
KIND_AUTO group on CPU, neither of which the config asked for), and KIND_GPU on a server without
GPUs (``instance_group[i].kind``; Triton refuses to load it). KIND_AUTO on a server without GPUs
runs on CPU whatever it lists, as Triton does, so one config can serve GPU and CPU pools.
"""
from django.core.exceptions import ValidationError

KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL = "KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"
KINDS = (KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL)
FIELD = "instance_group"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _what_it_has(gpu_count: int) -> str:
    return "it has 1 GPU, index 0" if gpu_count == 1 else f"it has {gpu_count} GPUs, indexes 0 to {gpu_count - 1}"


def _group_devices(index: int, group, gpu_count: int, server_name: str) -> set[int]:
    where = f"{FIELD}[{index}]"
    if not isinstance(group, dict):
        raise ValidationError({where: "Each instance group must be an object."})
    kind = group.get("kind", KIND_AUTO)
    if kind not in KINDS:
        raise ValidationError({f"{where}.kind": f"Unknown kind {kind!r}; use one of {', '.join(KINDS)}."})
    count = group.get("count", 1)
    if not _is_int(count) or count < 0:
        raise ValidationError({f"{where}.count": "The count must be an integer of 0 or more (0 means 1)."})
    gpus = group.get("gpus", [])
    if not isinstance(gpus, list) or not all(_is_int(g) and g >= 0 for g in gpus):
        raise ValidationError({f"{where}.gpus": "gpus must be a list of GPU indexes (integers of 0 or more)."})

    if kind == KIND_CPU or (kind in (KIND_AUTO, KIND_MODEL) and gpu_count == 0):
        return set()
    if kind == KIND_GPU and gpu_count == 0:
        raise ValidationError({f"{where}.kind": f"KIND_GPU needs a GPU, and {server_name} has none; Triton would refuse to load it."})
    missing = sorted({g for g in gpus if g >= gpu_count})
    if missing:
        names = ("GPU " if len(missing) == 1 else "GPUs ") + ", ".join(map(str, missing))
        raise ValidationError({f"{where}.gpus": f"{server_name} has no {names}: {_what_it_has(gpu_count)}."})
    return set(gpus) if gpus else set(range(gpu_count))


def devices_for_instance_groups(instance_groups: list[dict] | None, *, server_gpu_count: int,
                                server_name: str = "the server") -> frozenset[int]:
    """The GPU indexes that a model with these instance groups occupies on a server with
    ``server_gpu_count`` GPUs, however many of its versions are loaded. ``server_name`` only
    names the server in error messages."""
    if not _is_int(server_gpu_count) or server_gpu_count < 0:
        raise ValueError(f"server_gpu_count must be an integer of 0 or more, got {server_gpu_count!r}")
    if instance_groups is None:
        instance_groups = []
    if not isinstance(instance_groups, list):
        raise ValidationError({FIELD: "instance_group must be a list of instance groups."})
    groups = instance_groups or [{"kind": KIND_AUTO, "count": 1}]
    devices: set[int] = set()
    for index, group in enumerate(groups):
        devices |= _group_devices(index, group, server_gpu_count, server_name)
    return frozenset(devices)
