"""How many GPUs a Triton ``instance_group`` takes on one server. Pure: no ORM, no I/O.

The quota rule: KIND_GPU takes ``count`` x (the number of ``gpus`` listed, or 1); KIND_CPU takes
none. Where Triton decides the device itself we count as if it chose the GPU whenever the
server has GPUs, so a config can never dodge the quota by leaving the choice to Triton:

- KIND_AUTO is what Triton resolves to GPU when the server has GPUs (and to CPU when it has
  none), so it counts as KIND_GPU when ``server_has_gpus`` and as nothing otherwise.
- KIND_MODEL lets the model place its instances; counted like KIND_AUTO.
- A missing ``kind`` is KIND_AUTO, and an empty or missing ``instance_group`` is Triton's default
  of one KIND_AUTO instance. A ``count`` of 0 or missing is 1, as Triton normalizes it (proto3
  cannot tell 0 from unset).

``server_has_gpus`` defaults to True: when the server is not known yet, reserve rather than
under-count. Note that Triton itself places ``count`` instances on *every* GPU of the server
when ``gpus`` is omitted; the quota rule counts 1, so configs for multi-GPU servers should list
their ``gpus``.
"""
from django.core.exceptions import ValidationError

KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL = "KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"
KINDS = (KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL)
FIELD = "instance_group"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _group_gpus(index: int, group, server_has_gpus: bool) -> int:
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

    on_gpu = kind == KIND_GPU or (kind in (KIND_AUTO, KIND_MODEL) and server_has_gpus)
    if not on_gpu:
        return 0
    return max(count, 1) * (len(gpus) or 1)


def gpus_for_instance_groups(instance_groups: list[dict] | None, *, server_has_gpus: bool = True) -> int:
    """The GPUs that a version with these instance groups takes on one server."""
    if instance_groups is None:
        instance_groups = []
    if not isinstance(instance_groups, list):
        raise ValidationError({FIELD: "instance_group must be a list of instance groups."})
    groups = instance_groups or [{"kind": KIND_AUTO, "count": 1}]
    return sum(_group_gpus(index, group, server_has_gpus) for index, group in enumerate(groups))
