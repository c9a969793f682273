"""Validation of a model's I/O signature, following Triton's ModelInput/ModelOutput rules."""
import re

from django.core.exceptions import ValidationError

DATA_TYPES = {
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "STRING",
}
TENSOR_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$")
MAX_DIMS = 8
INT64_MAX = 2**63 - 1  # Triton's dims are int64 (model_config.proto)


def normalize_tensors(value, field: str) -> list[dict]:
    """Check a list of ``{"name", "data_type", "dims"}`` and return it in Triton's form
    (``data_type`` as ``TYPE_FP32``). Raises ValidationError keyed by ``field[i].key``."""
    if not isinstance(value, list) or not value:
        raise ValidationError({field: "Give a non-empty list of tensors, each {name, data_type, dims}."})
    errors: dict[str, str] = {}
    out: list[dict] = []
    seen: set[str] = set()
    for i, spec in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(spec, dict):
            errors[where] = "Each tensor must be an object with name, data_type and dims."
            continue
        unknown = set(spec) - {"name", "data_type", "dims"}
        if unknown:
            errors[where] = f"Unknown keys: {', '.join(sorted(unknown))}."
            continue
        name, data_type, dims = spec.get("name"), spec.get("data_type"), spec.get("dims")
        if not isinstance(name, str) or not TENSOR_NAME_RE.match(name):
            errors[f"{where}.name"] = "Use 1-128 letters, digits, '_', '.', ':', '/' or '-'."
        elif name in seen:
            errors[f"{where}.name"] = f"Tensor name {name!r} is used twice."
        else:
            seen.add(name)
        dtype = data_type.upper().removeprefix("TYPE_") if isinstance(data_type, str) else None
        if dtype not in DATA_TYPES:
            errors[f"{where}.data_type"] = f"Use one of {', '.join('TYPE_' + t for t in sorted(DATA_TYPES))}."
        if (
            not isinstance(dims, list)
            or not 1 <= len(dims) <= MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and (d == -1 or 1 <= d <= INT64_MAX) for d in dims)
        ):
            errors[f"{where}.dims"] = f"Give 1-{MAX_DIMS} dimensions, each -1 (variable) or a positive integer up to {INT64_MAX}."
        if not any(key.startswith(where) for key in errors):
            out.append({"name": name, "data_type": f"TYPE_{dtype}", "dims": dims})
    if errors:
        raise ValidationError(errors)
    return out
