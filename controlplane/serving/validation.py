"""Validate a serving spec before any Triton server sees it. Pure: no ORM, no I/O.

A spec is the part of Triton's ModelConfig that Switchyard owns, with Triton's own field names:

    max_batch_size, dynamic_batching {preferred_batch_size, max_queue_delay_microseconds,
    priority_levels, default_priority_level, default_queue_policy {timeout_action,
    default_timeout_microseconds, allow_timeout_override, max_queue_size}},
    instance_group [{kind, count, gpus}], version_policy {latest|all|specific},
    model_warmup [{name, batch_size, count, inputs {<input>: {data_type, dims,
    zero_data|random_data}}}], response_cache {enable}

The rules follow triton-inference-server/common protobuf/model_config.proto (field types and
documented constraints) and triton-inference-server/core src/model_config_utils.cc
(NormalizeModelConfig, NormalizeInstanceGroup, ValidateModelConfig, ValidateInstanceGroup) and
src/backend_model_instance.cc (GenerateWarmupData). Triton reports most config mistakes as a bare
"failed to poll from model repository", so every rule here names the field instead. Where
Switchyard is stricter than Triton, the comment says so and why.

validate_spec returns the normalised spec: every field of a section that is present is filled
with Triton's default, lists that are sets are sorted, so that two specs that configure Triton
the same way compare equal (saving an equal spec writes no revision) and diffs show 0 -> 100
rather than "added". Absent sections mean: no dynamic batching; instance_group decided by the
renderer's backend default; version_policy decided by the placement (see render.py).
"""
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from controlplane.quotas.instance_groups import KIND_AUTO, KIND_CPU, KIND_GPU, KIND_MODEL, KINDS
from controlplane.registry.tensors import DATA_TYPES

# Protobuf scalar ranges: model_config.proto declares each field's type, and a value out of range
# fails Triton's JSON parse as a whole.
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
# Switchyard's guard, not Triton's: each instance is a process (or a GPU context) per server.
MAX_INSTANCE_COUNT = 64

TOP_LEVEL = ("max_batch_size", "dynamic_batching", "instance_group", "version_policy", "model_warmup", "response_cache")
DYNAMIC_BATCHING = (
    "preferred_batch_size", "max_queue_delay_microseconds", "priority_levels", "default_priority_level",
    "default_queue_policy",
)
QUEUE_POLICY = ("timeout_action", "default_timeout_microseconds", "allow_timeout_override", "max_queue_size")
TIMEOUT_ACTIONS = ("REJECT", "DELAY")
INSTANCE_GROUP = ("kind", "count", "gpus")
VERSION_POLICIES = ("latest", "all", "specific")
WARMUP = ("name", "batch_size", "count", "inputs")
WARMUP_INPUT = ("data_type", "dims", "zero_data", "random_data")
RESPONSE_CACHE = ("enable",)

# Fields Triton has at each level that a serving spec does not set, with a clearer error than
# "unknown field" (None: the generic "Switchyard does not manage it").
_REGISTRY = "Not part of a serving config: the registry sets it (the model's name, backend and signature)."
NOT_MANAGED = {
    "": {
        "name": _REGISTRY, "platform": _REGISTRY, "backend": _REGISTRY, "input": _REGISTRY, "output": _REGISTRY,
        **dict.fromkeys((
            "runtime", "sequence_batching", "ensemble_scheduling", "optimization", "parameters", "batch_input",
            "batch_output", "model_transaction_policy", "model_repository_agents", "default_model_filename",
            "cc_model_filenames", "metric_tags", "model_operations", "model_metrics",
        )),
    },
    "dynamic_batching": dict.fromkeys(("preserve_ordering", "priority_queue_policy")),
    "instance_group": dict.fromkeys(("name", "profile", "passive", "host_policy", "rate_limiter", "secondary_devices")),
    "warmup_input": {"input_data_file": "Switchyard ships no warmup data files; use zero_data or random_data."},
}


def validate_spec(spec, *, model, pool_has_gpus: bool | None = None) -> dict:
    """Check ``spec`` for ``model`` and return it normalised, or raise ValidationError whose dict
    is keyed by dotted field paths (``dynamic_batching.preferred_batch_size[1]``). A spec-wide
    problem is keyed NON_FIELD_ERRORS. ``pool_has_gpus`` is False for a pool known to have no
    GPUs, True for one with GPUs and None when no pool is in view (the check is skipped)."""
    checker = _Checker(model, pool_has_gpus)
    normalised = checker.spec(spec)
    if checker.errors:
        raise ValidationError(checker.errors)
    return normalised


def spec_errors(exc: ValidationError, prefix: str = "spec") -> dict[str, list[str]]:
    """validate_spec's errors keyed as fields of a request that carries the spec as ``prefix``."""
    return {(prefix if key == NON_FIELD_ERRORS else f"{prefix}.{key}"): messages for key, messages in exc.message_dict.items()}


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value) -> str:
    text = repr(value) if not isinstance(value, bool) else ("true" if value else "false")
    return text if len(text) <= 40 else text[:37] + "..."


class _Checker:
    def __init__(self, model, pool_has_gpus):
        self.model = model
        self.pool_has_gpus = pool_has_gpus
        self.errors: dict[str, list[str]] = {}

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path or NON_FIELD_ERRORS, []).append(message)

    # -- typed readers: each returns the value, or None after recording an error ----------
    def integer(self, value, path: str, *, low: int, high: int, what: str = "a whole number", bounds: str = ""):
        # JSON has no int type of its own: refuse true/false (Python bools are ints) and 4.0
        # (Triton's protobuf parser accepts 4.0 for an int32 - seen - but it is a typo waiting
        # to happen) and "4" (accepted by protobuf for 64-bit fields only).
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"Must be {what}, not {_show(value)}.")
            return None
        if value < low or value > high:
            bound = bounds or (f"between {low} and {high}" if high < INT32_MAX else f"{low} or more")
            self.error(path, f"Must be {bound} (got {value}).")
            return None
        return value

    def boolean(self, value, path: str):
        if not isinstance(value, bool):
            self.error(path, f"Must be true or false, not {_show(value)}.")
            return None
        return value

    def obj(self, value, path: str, allowed: tuple[str, ...], level: str | None = None):
        """A JSON object with only ``allowed`` keys; other keys are errors at their own path."""
        if not isinstance(value, dict):
            self.error(path, f"Must be an object with any of: {', '.join(allowed) or 'no fields'}; not {_show(value)}.")
            return None
        not_managed = NOT_MANAGED.get(path if level is None else level, {})
        for key in value:
            if key in allowed:
                continue
            if key in not_managed and not_managed[key]:
                self.error(_join(path, key), not_managed[key])
            elif key in not_managed:
                self.error(_join(path, key), "Triton has this field, but Switchyard does not manage it.")
            else:
                self.error(_join(path, key), f"Unknown field. Allowed here: {', '.join(allowed) or 'none'}.")
        return value

    def int_list(self, value, path: str, *, low: int, high: int, unique: bool = True, non_empty: bool = False):
        """A list of integers; errors point at the element (``path[i]``). Returns None if invalid."""
        if not isinstance(value, list):
            self.error(path, f"Must be a list of whole numbers, not {_show(value)}.")
            return None
        if non_empty and not value:
            self.error(path, "Give at least one.")
            return None
        out, seen, ok = [], set(), True
        for index, item in enumerate(value):
            number = self.integer(item, f"{path}[{index}]", low=low, high=high)
            if number is None:
                ok = False
            elif unique and number in seen:
                self.error(f"{path}[{index}]", f"{number} is listed twice.")
                ok = False
            else:
                seen.add(number)
                out.append(number)
        return out if ok else None

    # -- the spec ---------------------------------------------------------------------------
    def spec(self, spec) -> dict:
        if spec is None:
            spec = {}
        if self.obj(spec, "", TOP_LEVEL) is None:
            return {}
        out: dict = {}
        max_batch_size = self.max_batch_size(spec)
        out["max_batch_size"] = max_batch_size if max_batch_size is not None else self.model.max_batch_size
        # Later rules compare with max_batch_size; when it is invalid, compare with the registered
        # value so that one typo gives one error, not a cascade.
        batch = out["max_batch_size"]
        # JSON null for a section is the same as leaving it out.
        if spec.get("dynamic_batching") is not None:
            out["dynamic_batching"] = self.dynamic_batching(spec["dynamic_batching"], batch)
        if spec.get("instance_group") is not None:
            groups = self.instance_groups(spec["instance_group"])
            if groups:
                out["instance_group"] = groups
        if spec.get("version_policy") is not None:
            out["version_policy"] = self.version_policy(spec["version_policy"])
        out["model_warmup"] = self.warmups(spec.get("model_warmup") or [], batch)
        out["response_cache"] = self.response_cache(spec.get("response_cache") or {})
        return out

    def max_batch_size(self, spec):
        registered = self.model.max_batch_size
        if "max_batch_size" not in spec:
            return registered
        value = self.integer(spec["max_batch_size"], "max_batch_size", low=0, high=INT32_MAX)
        if value is None:
            return None
        # Triton (model_config.proto): 0 means the model does not batch and its input/output dims
        # are the full tensor shapes; > 0 means Triton prepends a batch dimension to the dims.
        # The registry recorded the signature under the registered choice, so flipping it here
        # would silently change what every registered dims means (and every client's shapes).
        if registered == 0 and value > 0:
            self.error("max_batch_size", "This model was registered without batching (max_batch_size 0), so its dims "
                       "include the batch dimension; batching cannot be turned on here. Register a model with "
                       "max_batch_size > 0 instead.")
            return None
        if registered > 0 and value == 0:
            self.error("max_batch_size", f"This model was registered with batching (max_batch_size {registered}), so "
                       "its dims exclude the batch dimension; 0 would change their meaning. Use 1 to 'turn off' "
                       "batching.")
            return None
        # model_config.proto: max_batch_size "can only decrease what is allowed by the model itself".
        if value > registered:
            self.error("max_batch_size", f"Must be at most {registered}, the max_batch_size the model was registered "
                       "with; a serving config can only lower it.")
            return None
        return value

    def dynamic_batching(self, value, batch: int):
        path = "dynamic_batching"
        db = self.obj(value, path, DYNAMIC_BATCHING)
        if db is None:
            return None
        # Switchyard is stricter than Triton here: Triton loads dynamic_batching with
        # max_batch_size 0 (seen on 2.51) but its batcher then runs with a max batch of 1 and
        # never batches (DynamicBatchScheduler::Create clamps max(1, max_batch_size)).
        if batch == 0:
            self.error(path, "Dynamic batching needs max_batch_size > 0; this model does not batch.")
        out: dict = {}
        # ValidateModelConfig: "dynamic batching preferred size must be positive" and "must be
        # <= max batch size".
        raw = db.get("preferred_batch_size", [])
        for index, size in enumerate(raw if isinstance(raw, list) else []):
            if isinstance(size, int) and not isinstance(size, bool) and size > batch > 0:
                self.error(f"{path}.preferred_batch_size[{index}]", f"{size} is larger than max_batch_size ({batch}).")
        preferred = self.int_list(raw, f"{path}.preferred_batch_size", low=1, high=INT32_MAX)
        out["preferred_batch_size"] = sorted(preferred) if preferred is not None else None
        out["max_queue_delay_microseconds"] = self.integer(
            db.get("max_queue_delay_microseconds", 0), f"{path}.max_queue_delay_microseconds", low=0, high=UINT64_MAX)
        levels = self.integer(db.get("priority_levels", 0), f"{path}.priority_levels", low=0, high=UINT64_MAX)
        default = self.integer(db.get("default_priority_level", 0), f"{path}.default_priority_level", low=0, high=UINT64_MAX)
        if levels is not None and default is not None:
            # ValidateModelConfig: with priority levels, the default must be in [1, priority_levels].
            if levels > 0 and not 1 <= default <= levels:
                self.error(f"{path}.default_priority_level",
                           f"Must be between 1 and priority_levels ({levels}); 1 is the highest priority.")
            # Triton ignores it without levels; refuse it so a forgotten priority_levels shows.
            elif levels == 0 and default != 0:
                self.error(f"{path}.default_priority_level",
                           "Set priority_levels first; without priority levels this must be 0.")
        out["priority_levels"] = levels
        out["default_priority_level"] = default
        out["default_queue_policy"] = self.queue_policy(db.get("default_queue_policy") or {}, f"{path}.default_queue_policy")
        return out

    def queue_policy(self, value, path: str):
        policy = self.obj(value, path, QUEUE_POLICY)
        if policy is None:
            return None
        action = policy.get("timeout_action", "REJECT")
        if action not in TIMEOUT_ACTIONS:
            self.error(f"{path}.timeout_action", f"Must be REJECT or DELAY, not {_show(action)}.")
            action = None
        return {
            "timeout_action": action,
            "default_timeout_microseconds": self.integer(
                policy.get("default_timeout_microseconds", 0), f"{path}.default_timeout_microseconds", low=0, high=UINT64_MAX),
            "allow_timeout_override": self.boolean(policy.get("allow_timeout_override", False), f"{path}.allow_timeout_override"),
            "max_queue_size": self.integer(policy.get("max_queue_size", 0), f"{path}.max_queue_size", low=0, high=UINT32_MAX),
        }

    def instance_groups(self, value):
        path = "instance_group"
        if not isinstance(value, list):
            self.error(path, f"Must be a list of instance groups, not {_show(value)}.")
            return None
        return [self.instance_group(group, f"{path}[{index}]") for index, group in enumerate(value)]

    def instance_group(self, value, path: str):
        group = self.obj(value, path, INSTANCE_GROUP, "instance_group")
        if group is None:
            return None
        kind = group.get("kind", KIND_AUTO)
        if kind not in KINDS:
            self.error(f"{path}.kind", f"Must be one of {', '.join(KINDS)}, not {_show(kind)}.")
            kind = None
        # Triton turns a count below 1 into its default (NormalizeInstanceGroup ->
        # SetDefaultInstanceCount: 1, or 2 for CPU TF/ONNX); an explicit 0 is almost always a
        # mistake, so it is refused rather than silently becoming 1 or 2.
        count = self.integer(group.get("count", 1), f"{path}.count", low=1, high=MAX_INSTANCE_COUNT)
        gpus = self.int_list(group.get("gpus", []), f"{path}.gpus", low=0, high=INT32_MAX)
        # ValidateInstanceGroup: KIND_CPU and KIND_MODEL may not list GPUs. model_config.proto
        # allows gpus with KIND_AUTO (it falls back to CPU when a listed GPU is missing).
        if gpus and kind in (KIND_CPU, KIND_MODEL):
            self.error(f"{path}.gpus", f"{kind} instances cannot list GPUs; use KIND_GPU (or KIND_AUTO).")
        if kind == KIND_GPU and self.pool_has_gpus is False:
            # ValidateInstanceGroup: "has kind KIND_GPU but no GPUs are available" (seen on a
            # CPU-only server). The Python backend is the common case: it runs on CPU-only pools.
            hint = " The python backend runs on CPU: use KIND_CPU." if self.model.backend == "python" else ""
            self.error(f"{path}.kind", "KIND_GPU needs GPUs, and this pool has none; Triton would refuse to load "
                       f"it.{hint} KIND_AUTO picks the GPU where there is one.")
        if kind == KIND_CPU and self.model.backend == "tensorrt":
            self.error(f"{path}.kind", "TensorRT plans run only on GPUs; use KIND_GPU or KIND_AUTO.")
        return {"kind": kind, "count": count, "gpus": gpus}

    def version_policy(self, value):
        path = "version_policy"
        policy = self.obj(value, path, VERSION_POLICIES)
        if policy is None:
            return None
        # model_config.proto: ModelVersionPolicy is a oneof.
        if len(policy) != 1:
            if not set(policy) - set(VERSION_POLICIES):
                self.error(path, "Give exactly one of latest, all or specific.")
            return None
        (choice, body), = policy.items()
        if choice not in VERSION_POLICIES:
            return None  # already reported as an unknown field
        where = _join(path, choice)
        if choice == "latest":
            latest = self.obj(body, where, ("num_versions",))
            if latest is None:
                return None
            # Proto default is 1; Triton refuses 0 at load time ("at least one version must be
            # available under the version policy") - seen.
            num = self.integer(latest.get("num_versions", 1), f"{where}.num_versions", low=1, high=UINT32_MAX)
            return {"latest": {"num_versions": num}}
        if choice == "all":
            return {"all": {}} if self.obj(body, where, ()) is not None else None
        specific = self.obj(body, where, ("versions",))
        if specific is None:
            return None
        if "versions" not in specific:
            self.error(f"{where}.versions", "Give the versions to serve, such as [1, 2].")
            return None
        # Version directories are positive integers (ModelVersion.version >= 1).
        versions = self.int_list(specific["versions"], f"{where}.versions", low=1, high=INT64_MAX, non_empty=True)
        return {"specific": {"versions": sorted(versions)}} if versions is not None else None

    def warmups(self, value, batch: int):
        path = "model_warmup"
        if not isinstance(value, list):
            self.error(path, f"Must be a list of warmup samples, not {_show(value)}.")
            return []
        names: set[str] = set()
        out = []
        for index, sample in enumerate(value):
            where = f"{path}[{index}]"
            normalised = self.warmup(sample, where, batch)
            name = normalised.get("name") if normalised else None
            if name is not None and name in names:
                self.error(f"{where}.name", f"Sample name {name!r} is used twice.")
            names.add(name)
            out.append(normalised)
        return out

    def warmup(self, value, path: str, batch: int):
        sample = self.obj(value, path, WARMUP)
        if sample is None:
            return None
        name = sample.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            self.error(f"{path}.name", "Give the sample a name (1-128 characters); Triton names it in warmup errors.")
            name = None
        # model_config.proto: batch_size "must be >= 1. For models that don't support batching,
        # batch_size must be 1". Triton skips a 0 sample silently (GenerateWarmupData); it is
        # refused here. Above max_batch_size Triton fails the load ("batch size 9 ... max allowed
        # is 8") - seen.
        if "batch_size" not in sample:
            self.error(f"{path}.batch_size", "Give the batch size of the sample (1 or more).")
            batch_size = None
        elif batch == 0:
            batch_size = self.integer(sample["batch_size"], f"{path}.batch_size", low=1, high=1,
                                      bounds="1, because this model does not batch")
        else:
            batch_size = self.integer(sample["batch_size"], f"{path}.batch_size", low=1, high=UINT32_MAX)
            if batch_size is not None and batch_size > batch:
                self.error(f"{path}.batch_size", f"Must be at most max_batch_size ({batch}); Triton fails the load.")
                batch_size = None
        count = self.integer(sample.get("count", 0), f"{path}.count", low=0, high=UINT32_MAX)
        return {"name": name, "batch_size": batch_size, "count": count, "inputs": self.warmup_inputs(sample.get("inputs"), f"{path}.inputs")}

    def warmup_inputs(self, value, path: str):
        model_inputs = {t["name"]: t for t in self.model.inputs}
        if not isinstance(value, dict):
            self.error(path, f"Must be an object keyed by input name ({', '.join(model_inputs)}), not {_show(value)}.")
            return None
        out = {}
        for name, spec in value.items():
            where = _join(path, name)
            tensor = model_inputs.get(name)
            if tensor is None:
                self.error(where, f"The model has no input named {name!r}; its inputs are {', '.join(model_inputs)}.")
                continue
            out[name] = self.warmup_input(spec, where, tensor)
        # A sample missing an input fails the load ("missing required input(s)") - seen.
        missing = [name for name in model_inputs if name not in value]
        if missing:
            self.error(path, f"Give every model input; missing: {', '.join(missing)}.")
        return out

    def warmup_input(self, value, path: str, tensor: dict):
        spec = self.obj(value, path, WARMUP_INPUT, "warmup_input")
        if spec is None:
            return None
        out: dict = {}
        # The sample becomes a real inference request, so its type and shape must match the
        # model's input or the load fails ("data-type is 'INT32', but model expects 'FP32'",
        # "unexpected shape for input") - both seen.
        data_type = spec.get("data_type", tensor["data_type"])
        normal = data_type.upper().removeprefix("TYPE_") if isinstance(data_type, str) else None
        if normal not in DATA_TYPES:
            self.error(f"{path}.data_type", f"Must be a Triton data type such as {tensor['data_type']}, not {_show(data_type)}.")
        elif f"TYPE_{normal}" != tensor["data_type"]:
            self.error(f"{path}.data_type", f"Must be {tensor['data_type']}, the type of input {tensor['name']}.")
        else:
            out["data_type"] = tensor["data_type"]
        out["dims"] = self.warmup_dims(spec, path, tensor["dims"])
        # oneof input_data_type: set-ness is what counts ("the value of 'zero_data' will not be
        # checked"), so {"zero_data": false} would still mean zeros. Require exactly one, true.
        chosen = [key for key in ("zero_data", "random_data") if key in spec]
        if len(chosen) != 1:
            self.error(path, "Give exactly one of zero_data: true or random_data: true.")
        elif spec[chosen[0]] is not True:
            self.error(_join(path, chosen[0]), "Must be true (leave it out to use the other one).")
        else:
            out[chosen[0]] = True
        return out

    def warmup_dims(self, spec: dict, path: str, model_dims: list[int]):
        where = f"{path}.dims"
        if "dims" not in spec:
            if -1 in model_dims:
                # GenerateWarmupData: "warmup setting expects all variable-size dimensions are specified".
                self.error(where, f"Give the dims; the input's shape {model_dims} has variable (-1) dimensions.")
                return None
            return list(model_dims)
        dims = self.int_list(spec["dims"], where, low=1, high=INT64_MAX, unique=False)
        if dims is None:
            return None
        if len(dims) != len(model_dims) or any(m != -1 and d != m for d, m in zip(dims, model_dims)):
            self.error(where, f"Must match the input's shape {model_dims} (without the batch dimension), with a "
                       "size of 1 or more for each -1.")
            return None
        return dims

    def response_cache(self, value):
        cache = self.obj(value, "response_cache", RESPONSE_CACHE)
        if cache is None:
            return None
        return {"enable": self.boolean(cache.get("enable", False), "response_cache.enable")}
