"""What a deployment request asks for, checked field by field. Pure: no ORM, no I/O.

The API, the CLI (through the API) and the UI form all hand the same JSON-shaped dict to
`parse_spec`, which returns a `Spec` or raises ValidationError whose keys name the API's fields
(`steps[1].percent`, `gates.max_error_ratio`). Strict about types: a bool is not a number and a
string is not an integer. Which endpoint, version or servers the names mean is the services' job.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from django.core.exceptions import ValidationError

from controlplane.metrics import custom_gates

STRATEGIES = ("all_at_once", "canary", "linear", "steps")
PLACEMENTS = ("new_servers", "same_servers")
FIELDS = {
    "endpoint", "version", "label", "strategy", "canary_percent", "step_percent", "bake_s", "steps", "placement",
    "servers", "gates", "approval_required", "deadline_s", "rollback_window_s", "start_at", "reason",
}
GATE_FIELDS = {
    "max_error_ratio", "max_p99_ms", "max_p99_ratio", "custom", "min_requests", "interval_s", "window_s",
    "failures_to_breach", "guard",
}
CUSTOM_FIELDS = {"name", "query", "max"}
MAX_STEPS = 20
MAX_BAKE_S = 7 * 24 * 3600
MAX_DEADLINE_S = 30 * 24 * 3600
MAX_WINDOW_S = 7 * 24 * 3600
MAX_REASON = 2000
MAX_CUSTOM = 5
MAX_QUERY = 2000
DEFAULTS = {"canary_percent": 10, "step_percent": 25, "bake_s": 60, "rollback_window_s": 600}


@dataclass(frozen=True)
class CustomGate:
    """A PromQL expression whose value must stay at or below `max`. `{{endpoint}}`, `{{model}}`,
    `{{variant}}` and `{{window}}` are replaced by the endpoint's public name, the model's Triton
    name, green's variant name and the window (as `60s`), each quoted safely, like Flagger's
    metric templates. Every selector must be pinned to the endpoint or the model
    (``metrics.custom_gates``): a gate reads its own deployment's series only."""

    name: str
    query: str
    max: float


@dataclass(frozen=True)
class Gates:
    max_error_ratio: float | None = 0.05  # green's 5xx share at the gateway
    max_p99_ms: float | None = None  # green's p99 latency at the gateway, absolute
    max_p99_ratio: float | None = None  # green's p99 over blue's, the same window
    custom: tuple[CustomGate, ...] = ()
    min_requests: int = 50  # fewer requests than this in the window is no data, never a pass
    interval_s: int = 10  # between evaluations while analyzing
    window_s: int = 60  # how far back each evaluation looks (bounded by the step's age)
    failures_to_breach: int = 2  # failed evaluations in a row that count as a breach
    guard: bool = True  # the gateway stops sending to green at once when its error ratio breaks the limit

    def as_dict(self) -> dict:
        data = asdict(self)
        data["custom"] = [asdict(c) for c in self.custom]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Gates:
        return cls(**{**data, "custom": tuple(CustomGate(**c) for c in data.get("custom", ()))})


@dataclass(frozen=True)
class Step:
    percent: int  # green's share of traffic during the step
    bake_s: int  # how long the step runs before its gates are judged

    def as_dict(self) -> dict:
        return {"percent": self.percent, "bake_s": self.bake_s}


@dataclass(frozen=True)
class Spec:
    endpoint: str
    version: int | None
    label: str
    strategy: str
    steps: tuple[Step, ...]
    placement: str
    servers: tuple[str, ...]
    gates: Gates
    approval_required: bool
    deadline_s: int | None
    rollback_window_s: int
    start_at: datetime | None
    reason: str
    defaults_used: tuple[str, ...] = field(default=(), compare=False)


class _Errors(dict):
    def add(self, key: str, message: str) -> None:
        self.setdefault(key, message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _int(data: dict, key: str, errors: _Errors, *, lo: int, hi: int, default=None, path: str = "",
         nullable: bool = False) -> int | None:
    name = f"{path}{key}"
    value = data.get(key, default)
    if value is None:
        if key in data and not nullable:
            errors.add(name, f"Give a whole number from {lo} to {hi}, or leave the field out.")
        return None
    if not _is_int(value) or not lo <= value <= hi:
        errors.add(name, f"Give a whole number from {lo} to {hi}.")
        return None
    return value


def _number(data: dict, key: str, errors: _Errors, *, lo: float, hi: float, default=None, path: str = "",
            lo_open: bool = False, nullable: bool = False) -> float | None:
    name = f"{path}{key}"
    value = data.get(key, default)
    if value is None:
        if key in data and not nullable:
            errors.add(name, "Give a number, or leave the field out.")
        return None
    if not _is_number(value) or value > hi or value < lo or (lo_open and value == lo):
        above = "above" if lo_open else "from"
        errors.add(name, f"Give a number {above} {lo:g} to {hi:g}.")
        return None
    return float(value)


def _parse_start(value, errors: _Errors) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add("start_at", "Give an ISO 8601 time with its zone, such as 2026-12-01T18:00:00Z.")
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors.add("start_at", "Give an ISO 8601 time with its zone, such as 2026-12-01T18:00:00Z.")
        return None
    if parsed.tzinfo is None:
        errors.add("start_at", "Give the time zone too, such as Z or +01:00.")
        return None
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        errors.add("start_at", "Give a time within the calendar (years 1 to 9999 in UTC).")
        return None


def steps_for(strategy: str, *, canary_percent: int = 10, step_percent: int = 25, bake_s: int = 60,
              steps: list[Step] | None = None) -> tuple[Step, ...]:
    """The traffic steps of a strategy. Promotion to 100% follows the last step, so a step at 100
    only appears when asked for (all at once, or an explicit list ending at 100)."""
    if strategy == "all_at_once":
        return (Step(100, bake_s),)
    if strategy == "canary":
        return (Step(canary_percent, bake_s),)
    if strategy == "linear":
        return tuple(Step(p, bake_s) for p in range(step_percent, 100, step_percent))
    return tuple(steps or ())


def _parse_steps(raw, errors: _Errors) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        errors.add("steps", "Give a list of steps such as [{\"percent\": 10, \"bake_s\": 60}, {\"percent\": 50, \"bake_s\": 60}].")
        return []
    if len(raw) > MAX_STEPS:
        errors.add("steps", f"At most {MAX_STEPS} steps.")
        return []
    parsed = []
    for i, item in enumerate(raw):
        path = f"steps[{i}]."
        if not isinstance(item, dict):
            errors.add(f"steps[{i}]", "Each step is an object with percent and bake_s.")
            continue
        extra = sorted(set(item) - {"percent", "bake_s"})
        if extra:
            errors.add(f"steps[{i}]", f"Unknown field {extra[0]!r}; a step has percent and bake_s.")
            continue
        percent = _int(item, "percent", errors, lo=1, hi=100, path=path)
        bake = _int(item, "bake_s", errors, lo=0, hi=MAX_BAKE_S, path=path, default=0)
        if "percent" not in item:
            errors.add(f"{path}percent", "Give green's share of traffic for this step, 1 to 100.")
        if percent is not None and bake is not None:
            if parsed and percent <= parsed[-1].percent:
                errors.add(f"{path}percent", f"Steps must grow: {percent} is not above {parsed[-1].percent}.")
            parsed.append(Step(percent, bake))
    return parsed


def _parse_gates(raw, errors: _Errors) -> Gates:
    if raw is None:
        return Gates()
    if not isinstance(raw, dict):
        errors.add("gates", "Give an object, such as {\"max_error_ratio\": 0.01, \"max_p99_ratio\": 1.2}.")
        return Gates()
    for extra in sorted(set(raw) - GATE_FIELDS):
        errors.add(f"gates.{extra}", f"Unknown gate field; use {', '.join(sorted(GATE_FIELDS))}.")
    p = "gates."
    defaults = Gates()
    values = {
        "max_error_ratio": _number(raw, "max_error_ratio", errors, lo=0, hi=1, path=p, default=defaults.max_error_ratio,
                                   nullable=True),
        "max_p99_ms": _number(raw, "max_p99_ms", errors, lo=0, hi=3_600_000, path=p, lo_open=True, nullable=True),
        "max_p99_ratio": _number(raw, "max_p99_ratio", errors, lo=1, hi=1000, path=p, nullable=True),
        "min_requests": _int(raw, "min_requests", errors, lo=1, hi=10_000_000, path=p, default=defaults.min_requests),
        "interval_s": _int(raw, "interval_s", errors, lo=1, hi=3600, path=p, default=defaults.interval_s),
        "window_s": _int(raw, "window_s", errors, lo=5, hi=MAX_WINDOW_S, path=p, default=defaults.window_s),
        "failures_to_breach": _int(raw, "failures_to_breach", errors, lo=1, hi=100, path=p,
                                   default=defaults.failures_to_breach),
    }
    guard = raw.get("guard", True)
    if not isinstance(guard, bool):
        errors.add("gates.guard", "Give true or false.")
        guard = True
    custom = []
    raw_custom = raw.get("custom", [])
    if not isinstance(raw_custom, list) or len(raw_custom) > MAX_CUSTOM:
        errors.add("gates.custom", f"Give a list of at most {MAX_CUSTOM} gates, each {{name, query, max}}.")
        raw_custom = []
    for i, item in enumerate(raw_custom):
        path = f"gates.custom[{i}]"
        if not isinstance(item, dict) or set(item) != CUSTOM_FIELDS:
            errors.add(path, "A custom gate is an object with exactly name, query and max.")
            continue
        name, query = item["name"], item["query"]
        if not isinstance(name, str) or not 1 <= len(name) <= 60 or not name.replace("_", "").replace("-", "").isalnum():
            errors.add(f"{path}.name", "Give a short name of letters, digits, - and _.")
            continue
        if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY or "\x00" in query:
            errors.add(f"{path}.query", f"Give a PromQL expression of at most {MAX_QUERY} characters.")
            continue
        if why := custom_gates.problem(query):
            errors.add(f"{path}.query", why)
            continue
        limit = _number(item, "max", errors, lo=-1e18, hi=1e18, path=f"{path}.")
        if limit is not None:
            custom.append(CustomGate(name=name, query=query, max=limit))
    names = [c.name for c in custom]
    if len(set(names)) != len(names):
        errors.add("gates.custom", "Two custom gates have the same name.")
    if any(v is None for k, v in values.items() if k not in ("max_error_ratio", "max_p99_ms", "max_p99_ratio")):
        return defaults
    gates = Gates(**values, custom=tuple(custom), guard=guard)
    bad_gate = any(k.startswith("gates.") for k in errors)
    if not bad_gate and gates.max_error_ratio is None and gates.max_p99_ms is None and gates.max_p99_ratio is None \
            and not gates.custom:
        errors.add("gates", "Give at least one gate: max_error_ratio, max_p99_ms, max_p99_ratio or a custom one.")
    return gates


def parse_spec(data) -> Spec:
    """Check a request body. Raises ValidationError({field: message}) naming every bad field."""
    errors = _Errors()
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": "Send a JSON object."})
    for key in sorted(set(data) - FIELDS):
        errors.add(key, "Unknown field.")

    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > 127:
        errors.add("endpoint", "Give the endpoint's public name, such as vision.fraud-scorer.")
        endpoint = ""
    version, label = data.get("version"), data.get("label")
    if version is not None and (not _is_int(version) or version < 1):
        errors.add("version", "Give a version number, such as 3.")
        version = None
    if label is not None and (not isinstance(label, str) or not label or len(label) > 31):
        errors.add("label", "Give a label name, such as canary.")
        label = None
    if (data.get("version") is None) == (data.get("label") is None) and "version" not in errors and "label" not in errors:
        errors.add("version", "Give either version (a number) or label (a name) for green, not both.")

    strategy = data.get("strategy", "canary")
    if strategy not in STRATEGIES or not isinstance(strategy, str):
        errors.add("strategy", f"Use one of {', '.join(STRATEGIES)}.")
        strategy = "canary"
    used = tuple(k for k in ("canary_percent", "step_percent", "bake_s") if k not in data)
    canary = _int(data, "canary_percent", errors, lo=1, hi=99, default=DEFAULTS["canary_percent"])
    linear = _int(data, "step_percent", errors, lo=1, hi=99, default=DEFAULTS["step_percent"])
    bake = _int(data, "bake_s", errors, lo=0, hi=MAX_BAKE_S, default=DEFAULTS["bake_s"])
    explicit: list[Step] = []
    if strategy == "steps":
        explicit = _parse_steps(data.get("steps"), errors)
    elif "steps" in data:
        errors.add("steps", "steps is for strategy \"steps\"; the other strategies make their own.")
    if linear is not None and strategy == "linear" and 100 // linear > MAX_STEPS:
        errors.add("step_percent", f"At most {MAX_STEPS} steps: use a step of at least {math.ceil(100 / MAX_STEPS)}%.")
    steps = steps_for(strategy, canary_percent=canary or 10, step_percent=linear or 25, bake_s=bake or 0,
                      steps=explicit)

    placement = data.get("placement", "same_servers")
    if placement not in PLACEMENTS or not isinstance(placement, str):
        errors.add("placement", f"Use one of {', '.join(PLACEMENTS)}.")
        placement = "same_servers"
    servers = data.get("servers", [])
    if not isinstance(servers, list) or not all(isinstance(s, str) and 0 < len(s) <= 63 for s in servers) or len(servers) > 1000:
        errors.add("servers", "Give a list of server names.")
        servers = []
    if placement == "new_servers" and not servers and "servers" not in errors:
        errors.add("servers", "new_servers needs the servers green goes on.")
    if placement == "same_servers" and servers:
        errors.add("servers", "same_servers loads green beside blue on blue's servers; leave servers out.")
    if len(set(servers)) != len(servers):
        errors.add("servers", "A server is listed twice.")

    gates = _parse_gates(data.get("gates"), errors)
    approval = data.get("approval_required", False)
    if not isinstance(approval, bool):
        errors.add("approval_required", "Give true or false.")
    deadline = _int(data, "deadline_s", errors, lo=60, hi=MAX_DEADLINE_S, nullable=True)
    window = _int(data, "rollback_window_s", errors, lo=0, hi=MAX_DEADLINE_S, default=DEFAULTS["rollback_window_s"])
    start_at = _parse_start(data.get("start_at"), errors)
    if start_at is not None and deadline is not None:
        try:
            start_at + timedelta(seconds=deadline)
        except OverflowError:
            errors.add("start_at", "The start time plus the deadline is past the end of the calendar.")
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        errors.add("reason", f"Give a text of at most {MAX_REASON} characters.")
    if errors:
        raise ValidationError(dict(errors))
    return Spec(
        endpoint=endpoint, version=version, label=label or "", strategy=strategy, steps=steps,
        placement=placement, servers=tuple(servers), gates=gates, approval_required=approval,
        deadline_s=deadline, rollback_window_s=window, start_at=start_at, reason=reason.strip(),
        defaults_used=used,
    )
