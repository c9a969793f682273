"""Field-by-field differences between two serving specs. Pure.

Paths use the validator's notation (``dynamic_batching.max_queue_delay_microseconds``,
``instance_group[0].count``). Lists of plain values (preferred sizes, gpus, versions) are
compared whole, which reads better than element by element; lists of objects are compared per
index. A field present on one side only has None on the other. The order is fixed: the spec's
own field order (max_batch_size first), then by name, then by index, whatever the key order of
the stored JSON (PostgreSQL's jsonb does not keep it).
"""
from controlplane.serving.validation import (
    DYNAMIC_BATCHING, INSTANCE_GROUP, QUEUE_POLICY, TOP_LEVEL, VERSION_POLICIES, WARMUP, WARMUP_INPUT,
)

# Field order at each level, by the name of the field that holds the level.
_ORDERS = {
    "": TOP_LEVEL, "dynamic_batching": DYNAMIC_BATCHING, "default_queue_policy": QUEUE_POLICY,
    "instance_group": INSTANCE_GROUP, "version_policy": VERSION_POLICIES, "model_warmup": WARMUP,
    "inputs": (), "warmup_input": WARMUP_INPUT,
}
_MISSING = object()


def spec_diff(old: dict | None, new: dict | None) -> list[dict]:
    """[{"path", "old", "new"}] for every leaf that differs, in a deterministic order."""
    before = dict(_leaves(old or {}))
    after = dict(_leaves(new or {}))
    changes = []
    for key in sorted(set(before) | set(after)):
        path, old_value = before.get(key, (None, _MISSING))
        path_new, new_value = after.get(key, (None, _MISSING))
        if old_value == new_value and type(old_value) is type(new_value):
            continue
        changes.append({
            "path": path if path is not None else path_new,
            "old": None if old_value is _MISSING else old_value,
            "new": None if new_value is _MISSING else new_value,
        })
    # [] -> [{...}] shows as the new elements' fields, not also as "[] removed".
    nested = {c["path"] for c in changes}
    return [c for c in changes if not (_empty_container(c) and any(p.startswith((f"{c['path']}[", f"{c['path']}.")) for p in nested))]


def _empty_container(change: dict) -> bool:
    return any(v in ([], {}) for v in (change["old"], change["new"])) and None in (change["old"], change["new"])


def _leaves(value, path: str = "", key: tuple = (), level: str = ""):
    """Yield (sort key, (path, value)) for each leaf. ``level`` names the field holding ``value``."""
    if isinstance(value, dict) and value:
        order = _ORDERS.get(level, ())
        for name, item in value.items():
            child = f"{path}.{name}" if path else str(name)
            rank = order.index(name) if name in order else len(order)
            yield from _leaves(item, child, (*key, (0, rank, str(name))), "warmup_input" if level == "inputs" else str(name))
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]", (*key, (1, index, "")), level)
    elif path:  # an empty spec has no leaves
        yield key, (path, value)
