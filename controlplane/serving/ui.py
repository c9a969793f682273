"""The serving config editor on the model page: its context, and the form <-> spec mapping.

The form (forms.ServingConfigForm) only converts text to JSON values. Every rule lives in
validation.py and services.py: a field that is not a number is passed on as text, so that the
validator's error names it like any other.
The registry's model_detail view merges model_page_context in.
"""
import json
import re

from controlplane.accounts.models import Role
from controlplane.accounts.selectors import has_role
from controlplane.common import jsonsafe
from controlplane.registry.models import Model
from controlplane.serving import selectors
from controlplane.serving.diff import spec_diff
from controlplane.serving.render import render_model_config
from controlplane.serving.validation import KINDS, TIMEOUT_ACTIONS, validate_spec

HISTORY_SIZE = 20

# Form field -> the spec path whose errors it shows. An error goes to the field with the longest
# matching path; errors no field matches are listed above the form.
FIELD_PATHS = {
    "max_batch_size": "max_batch_size",
    "dynamic_batching": "dynamic_batching",
    "preferred_batch_size": "dynamic_batching.preferred_batch_size",
    "max_queue_delay_microseconds": "dynamic_batching.max_queue_delay_microseconds",
    "priority_levels": "dynamic_batching.priority_levels",
    "default_priority_level": "dynamic_batching.default_priority_level",
    "timeout_action": "dynamic_batching.default_queue_policy.timeout_action",
    "default_timeout_microseconds": "dynamic_batching.default_queue_policy.default_timeout_microseconds",
    "allow_timeout_override": "dynamic_batching.default_queue_policy.allow_timeout_override",
    "max_queue_size": "dynamic_batching.default_queue_policy.max_queue_size",
    "instance_kind": "instance_group[0].kind",
    "instance_count": "instance_group[0].count",
    "instance_gpus": "instance_group[0].gpus",
    "version_policy": "version_policy",
    "num_versions": "version_policy.latest.num_versions",
    "versions": "version_policy.specific.versions",
    "response_cache": "response_cache",
    "model_warmup": "model_warmup",
    "reason": "reason",
}
CHECKBOXES = ("dynamic_batching", "allow_timeout_override", "response_cache")
_INTEGER = re.compile(r"-?\d+")
_ITEM = re.compile(r"^\[(\d+)\]")


def model_page_context(model: Model, user, *, form=None) -> dict:
    """``form``: a refused ServingConfigForm to show again, with its errors by their fields."""
    return {"serving": section_context(model, user, form=form)}


def section_context(model: Model, user, *, form=None, message: str = "", message_level: str = "success",
                    preview: dict | None = None) -> dict:
    """Everything the section template needs. ``form`` (a bound ServingConfigForm) re-shows a
    refused save: what was typed, and the errors next to their fields."""
    revisions = list(selectors.serving_configs_of(model)[: HISTORY_SIZE + 1])
    current = revisions[0] if revisions else None
    defaults = validate_spec({}, model=model)
    history = []
    for index, config in enumerate(revisions[:HISTORY_SIZE]):
        previous = revisions[index + 1].spec if index + 1 < len(revisions) else (defaults if config.revision == 1 else None)
        history.append({
            "config": config,
            "changes": display_changes(spec_diff(previous, config.spec)) if previous is not None else None,
            "previous": config.revision - 1 if config.revision > 1 else None,
        })
    spec = current.spec if current else defaults
    can_edit = has_role(user, model.team, Role.ADMIN)
    if form is not None:
        values = {name: form[name].value() or "" for name in form.fields}
        field_errors = {name: list(errors) for name, errors in form.errors.items() if name != "__all__"}
        other_errors = [("", message) for message in form.non_field_errors()]
    else:
        values, field_errors, other_errors = form_from_spec(spec, model), {}, []
    extra_json = values.get("extra_instance_groups", "")
    try:
        extra = jsonsafe.loads(extra_json) if extra_json else []
    except ValueError:
        extra = []
    return {
        "model": model,
        "max_batch_size_hint": f"Registered: {model.max_batch_size}" + (" (no batching)" if model.max_batch_size == 0 else ""),
        "extra_groups": extra if isinstance(extra, list) else [],
        "extra_groups_json": extra_json,
        "current": current,
        "spec": spec,
        "spec_json": pretty_json(spec),
        "can_edit": can_edit,
        # A refused save by someone the editor is not shown to (not a team admin): why, above the config.
        "refused": form.non_field_errors() if form is not None and not can_edit else [],
        "history": history,
        "rendered_json": pretty_json(render_model_config(model, current, versions=None)),
        "fields": {name: {"value": values.get(name, ""), "errors": field_errors.get(name, [])} for name in FIELD_PATHS},
        "other_errors": other_errors,
        "kinds": KINDS,
        "timeout_actions": TIMEOUT_ACTIONS,
        "message": message,
        "message_level": message_level,
        "preview": preview,
    }


def pretty_json(value) -> str:
    """Indented JSON with lists of plain values on one line ("dims": [4])."""
    if isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value):
        return json.dumps(value, separators=(", ", ": "))
    return _pretty(value, 0)


def _pretty(value, depth: int) -> str:
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_pretty(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(f"{inner}{_pretty(v, depth + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value, separators=(", ", ": "))


def display_changes(changes: list[dict] | None) -> list[dict] | None:
    """Diff rows with values as compact JSON (true, [4, 8]) rather than Python reprs."""
    if changes is None:
        return None
    def show(value):
        return None if value is None else json.dumps(value, separators=(", ", ": "))

    return [{"path": c["path"], "old": show(c["old"]), "new": show(c["new"])} for c in changes]


def preview_context(preview: dict) -> dict:
    field_errors, other_errors = errors_by_field(preview["errors"])
    return {
        "preview": {**preview, "changes": display_changes(preview["changes"])},
        "rendered_json": pretty_json(preview["rendered"]) if preview["rendered"] else "",
        "field_errors": [(name, field_errors.get(name, [])) for name in FIELD_PATHS],
        "other_errors": other_errors,
    }


def errors_by_field(errors: dict) -> tuple[dict, list]:
    """{"spec.x.y": [...]} -> ({form field: [...]}, [(path, message) no field shows])."""
    by_field: dict[str, list[str]] = {}
    other: list[tuple[str, str]] = []
    for key, messages in errors.items():
        path = key.removeprefix("spec.") if key != "spec" else ""
        best = max(
            (name for name, prefix in FIELD_PATHS.items()
             if path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))),
            key=lambda name: len(FIELD_PATHS[name]), default=None,
        )
        for message in messages:
            if best is None:
                other.append((path or "spec", message))
            else:
                # Name the element when the field holds several (preferred sizes, gpus ...).
                suffix = _where(path[len(FIELD_PATHS[best]):])
                by_field.setdefault(best, []).append(f"{suffix}: {message}" if suffix else message)
    return by_field, other


def _where(rest: str) -> str:
    """"[1]" -> "item 2", "[0].inputs.X" -> "item 1 inputs.X", ".latest" -> "latest"."""
    match = _ITEM.match(rest)
    if match:
        tail = rest[match.end():].lstrip(".")
        return f"item {int(match.group(1)) + 1}" + (f" {tail}" if tail else "")
    return rest.lstrip(".")


def _text(value) -> str:
    return "" if value is None else str(value)


def _join(values) -> str:
    return ", ".join(str(v) for v in values or [])


def form_from_spec(spec: dict, model: Model) -> dict:
    """The editor's field values (all text) for a normalised spec."""
    batching = spec.get("dynamic_batching")
    policy = (batching or {}).get("default_queue_policy") or {}
    groups = spec.get("instance_group") or []
    first = groups[0] if groups else {}
    version_policy = spec.get("version_policy") or {}
    choice = next(iter(version_policy), "")
    return {
        "max_batch_size": _text(spec.get("max_batch_size", model.max_batch_size)),
        "dynamic_batching": "on" if batching is not None else "",
        "preferred_batch_size": _join((batching or {}).get("preferred_batch_size")),
        "max_queue_delay_microseconds": _text((batching or {}).get("max_queue_delay_microseconds", 0)),
        "priority_levels": _text((batching or {}).get("priority_levels", 0)),
        "default_priority_level": _text((batching or {}).get("default_priority_level", 0)),
        "timeout_action": policy.get("timeout_action", "REJECT"),
        "default_timeout_microseconds": _text(policy.get("default_timeout_microseconds", 0)),
        "allow_timeout_override": "on" if policy.get("allow_timeout_override") else "",
        "max_queue_size": _text(policy.get("max_queue_size", 0)),
        "instance_kind": first.get("kind", ""),
        "instance_count": _text(first.get("count", "")),
        "instance_gpus": _join(first.get("gpus")),
        "extra_instance_groups": json.dumps(groups[1:]) if len(groups) > 1 else "",
        "version_policy": choice,
        "num_versions": _text(version_policy.get("latest", {}).get("num_versions", 1)),
        "versions": _join(version_policy.get("specific", {}).get("versions")),
        "response_cache": "on" if (spec.get("response_cache") or {}).get("enable") else "",
        "model_warmup": json.dumps(spec.get("model_warmup"), indent=2) if spec.get("model_warmup") else "",
        "reason": "",
    }


def _number(text: str):
    text = text.strip()
    return int(text) if _INTEGER.fullmatch(text) else text


def _numbers(text: str) -> list:
    return [_number(part) for part in re.split(r"[,\s]+", text.strip()) if part]


def spec_from_form(form: dict) -> tuple[dict, dict]:
    """(spec, errors keyed spec.<path> for text that is not even JSON)."""
    spec: dict = {}
    errors: dict[str, list[str]] = {}

    def put(target: dict, key: str, text: str):
        if text.strip():
            target[key] = _number(text)

    put(spec, "max_batch_size", form.get("max_batch_size", ""))
    if form.get("dynamic_batching"):
        batching = {"preferred_batch_size": _numbers(form.get("preferred_batch_size", ""))}
        for key in ("max_queue_delay_microseconds", "priority_levels", "default_priority_level"):
            put(batching, key, form.get(key, ""))
        policy = {"timeout_action": form.get("timeout_action") or "REJECT",
                  "allow_timeout_override": bool(form.get("allow_timeout_override"))}
        put(policy, "default_timeout_microseconds", form.get("default_timeout_microseconds", ""))
        put(policy, "max_queue_size", form.get("max_queue_size", ""))
        batching["default_queue_policy"] = policy
        spec["dynamic_batching"] = batching
    groups = []
    kind, count, gpus = (form.get(k, "").strip() for k in ("instance_kind", "instance_count", "instance_gpus"))
    if kind or count or gpus:
        group: dict = {}
        if kind:
            group["kind"] = kind
        put(group, "count", count)
        if gpus:
            group["gpus"] = _numbers(gpus)
        groups.append(group)
    extra = form.get("extra_instance_groups", "").strip()
    if extra:
        try:
            groups.extend(jsonsafe.loads(extra, "instance_group"))
        except jsonsafe.JSONRefused as exc:
            errors["spec.instance_group"] = [exc.message]
        except (ValueError, TypeError):
            errors["spec.instance_group"] = ["The additional instance groups are not valid JSON."]
    if groups:
        spec["instance_group"] = groups
    choice = form.get("version_policy", "")
    if choice == "latest":
        latest: dict = {}
        put(latest, "num_versions", form.get("num_versions", ""))
        spec["version_policy"] = {"latest": latest}
    elif choice == "all":
        spec["version_policy"] = {"all": {}}
    elif choice == "specific":
        spec["version_policy"] = {"specific": {"versions": _numbers(form.get("versions", ""))}}
    elif choice:
        spec["version_policy"] = choice  # the validator explains
    spec["response_cache"] = {"enable": bool(form.get("response_cache"))}
    warmup = form.get("model_warmup", "").strip()
    if warmup:
        try:
            spec["model_warmup"] = jsonsafe.loads(warmup, "model_warmup")
        except jsonsafe.JSONRefused as exc:
            errors["spec.model_warmup"] = [exc.message]
        except ValueError as exc:
            errors["spec.model_warmup"] = [f"Not valid JSON: {exc}."]
    return spec, errors
