"""The plan form of the UI: a deployment request as a person fills it in.

The form only turns the browser's strings into the API's JSON body (`body()`); every rule is
`spec.parse_spec`'s and the services' (`deployment_plan`, `deployment_create`), the same the API
applies. `refuse()` puts the service's refusal next to the input it names: `steps[1].percent` on
the steps text, `gates.custom[0].query` on that custom gate's row, `gates.max_p99_ms` on its box.
"""
from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from django import forms
from django.core.exceptions import PermissionDenied, ValidationError

from controlplane.common.errors import ServiceError
from controlplane.common.forms import PlainSelect
from controlplane.deployments import spec
from controlplane.deployments.models import PlacementMode, Strategy

# Which inputs each strategy uses; the others stay hidden and are not sent.
STRATEGY_FIELDS = {
    "all_at_once": ("bake_s",),
    "canary": ("canary_percent", "bake_s"),
    "linear": ("step_percent", "bake_s"),
    "steps": ("steps",),
}
GATE_INPUTS = ("max_error_ratio", "max_p99_ms", "max_p99_ratio", "min_requests", "interval_s", "window_s",
               "failures_to_breach", "guard")
_INT = re.compile(r"^[+-]?\d+$")
_STEP = re.compile(r"^(?P<percent>\d+)\s*%?\s*(?::\s*(?P<bake>\d+)\s*s?)?$")
_STEP_ERROR = re.compile(r"^steps\[(?P<index>\d+)\](?:\.(?P<part>percent|bake_s))?$")
_CUSTOM_ERROR = re.compile(r"^gates\.custom\[(?P<index>\d+)\](?:\.(?P<part>name|query|max))?$")
_SPLIT = re.compile(r"[,;\n]+")
QUERY_EXAMPLE = ("histogram_quantile(0.95, sum by (le) (rate(switchyard_gateway_request_duration_seconds_bucket"
                 "{endpoint={{endpoint}}, variant={{variant}}}[{{window}}]))) * 1000")


def _number(text: str):
    """"10" -> 10, "0.05" -> 0.05, "" -> None; anything else stays text, for the service to refuse
    in its own words (it accepts numbers only)."""
    text = text.strip()
    if not text:
        return None
    if _INT.match(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _number_input(label: str, *, help_text: str = "", initial=None, step: str = "1") -> forms.CharField:
    # A CharField: the conversion is _number's, the bounds are the service's.
    return forms.CharField(label=label, required=False, help_text=help_text, initial=initial,
                           widget=forms.NumberInput(attrs={"step": step}))


class DeploymentPlanForm(forms.Form):
    """``fixed``: the endpoint's public name when the form sits on that endpoint's page."""

    endpoint = forms.CharField(max_length=127, widget=PlainSelect, help_text="Blue is what it serves now.")
    green = forms.CharField(
        max_length=31, required=False, label="Green: version or label",
        help_text="A version number, such as 3, or a label, such as canary.")
    strategy = forms.ChoiceField(choices=Strategy.choices, initial=Strategy.CANARY)
    canary_percent = _number_input("Canary %", initial=spec.DEFAULTS["canary_percent"],
                                   help_text="Green's share during the canary, then all of it.")
    step_percent = _number_input("Step %", initial=spec.DEFAULTS["step_percent"],
                                 help_text="Each step adds this much: 25 gives 25, 50, 75, then 100.")
    bake_s = _number_input("Bake (s)", initial=spec.DEFAULTS["bake_s"],
                           help_text="How long each step runs before its gates are judged.")
    steps = forms.CharField(
        required=False, label="Steps", widget=forms.TextInput(attrs={"placeholder": "10:60, 50:120, 100"}),
        help_text="Each step is green's percent:bake seconds, comma-separated, growing: \"10:60, 50:120, 100\" "
                  "runs 10% for 60 s, 50% for 120 s, then 100% (a bare percent bakes 0 s). "
                  "Promotion to 100% follows the last step anyway.")
    placement = forms.ChoiceField(
        choices=sorted(PlacementMode.choices, reverse=True), initial=PlacementMode.SAME_SERVERS, widget=forms.RadioSelect,
        help_text="Same servers adds no GPU (memory headroom is checked); new servers hold extra GPUs "
                  "(the surge) until blue retires.")
    servers = forms.CharField(
        required=False, label="Servers", widget=forms.TextInput(attrs={"placeholder": "triton-3, triton-4"}),
        help_text="For new servers: the servers green goes on, separated by commas or spaces.")
    max_error_ratio = _number_input(
        "Max error ratio", initial=0.05, step="any",
        help_text="Green's 5xx share at the gateway, 0 to 1. Blank: no error-ratio gate.")
    max_p99_ms = _number_input("Max p99 (ms)", step="any", help_text="Green's p99 latency, absolute.")
    max_p99_ratio = _number_input("Max p99 ratio", step="any", help_text="Green's p99 over blue's, such as 1.2.")
    min_requests = _number_input("Min requests", initial=50, help_text="Fewer in the window is no data: it pauses.")
    interval_s = _number_input("Interval (s)", initial=10, help_text="Between evaluations.")
    window_s = _number_input("Window (s)", initial=60, help_text="How far back each evaluation looks.")
    failures_to_breach = _number_input("Failures to breach", initial=2,
                                       help_text="Failed evaluations in a row that roll back.")
    guard = forms.BooleanField(
        required=False, initial=True, label="Gateway guard",
        help_text="The gateway stops sending to green at once when its error ratio breaks the limit.")
    approval_required = forms.BooleanField(
        required=False, label="Approval required", help_text="Wait for a person to approve the promotion.")
    deadline_s = _number_input("Deadline (s)", help_text="Roll back if not done this long after the start. Blank: none.")
    rollback_window_s = _number_input(
        "Rollback window (s)", initial=spec.DEFAULTS["rollback_window_s"],
        help_text="Blue stays loaded this long after success, for a one-click fast rollback.")
    start_at = forms.CharField(
        required=False, label="Start at (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave blank to start now. The time is UTC; cancel any time before it.")
    reason = forms.CharField(required=False, label="Reason", widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Kept in the audit log and the deployment's history.")

    def __init__(self, data=None, *, endpoints: list[str] = (), fixed: str | None = None):
        self.fixed = fixed
        super().__init__(data, initial={"endpoint": fixed} if fixed else None, auto_id="plan-%s")
        if fixed:
            self.fields["endpoint"].widget = forms.HiddenInput()
        else:
            self.fields["endpoint"].widget.choices = [("", "Choose an endpoint")] + [(e, e) for e in endpoints]
        for i in range(spec.MAX_CUSTOM):
            def named(what, i=i):
                return {"aria-label": f"Custom gate {i + 1} {what}"}
            example = i == 0  # one row shows an example; five would be noise
            self.fields[f"custom-{i}-name"] = forms.CharField(
                required=False, widget=forms.TextInput(attrs={**named("name"), **({"placeholder": "p95_ms"} if example else {})}))
            self.fields[f"custom-{i}-query"] = forms.CharField(
                required=False, widget=forms.TextInput(attrs={**named("query"), **({"placeholder": QUERY_EXAMPLE} if example else {})}))
            self.fields[f"custom-{i}-max"] = forms.CharField(
                required=False, widget=forms.NumberInput(attrs={**named("max"), "step": "any"}))
        self.custom_rows_used: list[int] = []  # form row of each custom gate sent, in order
        self.group_errors: dict[str, list[str]] = {"gates": [], "custom": []}
        self.status_code = 400

    # -- what the template asks ---------------------------------------------------------------

    def value(self, name: str) -> str:
        """The field's current text (bound data, or its initial value)."""
        value = self[name].value()
        return "" if value is None else str(value)

    @property
    def strategy_value(self) -> str:
        return self.value("strategy") or Strategy.CANARY

    @property
    def placement_value(self) -> str:
        return self.value("placement") or PlacementMode.SAME_SERVERS

    def shown(self, name: str) -> bool:
        """Whether an input the strategy or placement decides on is in use."""
        if name == "servers":
            return self.placement_value == PlacementMode.NEW_SERVERS
        return name in STRATEGY_FIELDS.get(self.strategy_value, ())

    @property
    def visible(self) -> dict[str, bool]:
        return {name: self.shown(name) for name in ("canary_percent", "step_percent", "bake_s", "steps", "servers")}

    def custom_rows(self):
        return [tuple(self[f"custom-{i}-{part}"] for part in ("name", "query", "max")) for i in range(spec.MAX_CUSTOM)]

    @property
    def scheduled(self) -> bool:
        return bool(self.value("start_at").strip())

    @property
    def gates_open(self) -> bool:
        """Open the gates section when it holds an error or a custom gate."""
        return bool(self.group_errors["gates"] or self.group_errors["custom"]
                    or any(self[n].errors for n in GATE_INPUTS)
                    or any(self[f"custom-{i}-{p}"].errors or self.value(f"custom-{i}-{p}")
                           for i in range(spec.MAX_CUSTOM) for p in ("name", "query", "max")))

    # -- browser strings to the API's body ----------------------------------------------------

    def clean_steps(self) -> list[dict]:
        steps = []
        for i, item in enumerate(p.strip() for p in _SPLIT.split(self.cleaned_data["steps"])):
            if not item:
                continue
            match = _STEP.match(item)
            if match is None:
                raise ValidationError(f"Write each step as percent:bake seconds, such as 50:120; {item[:20]!r} is not.")
            step = {"percent": int(match["percent"])}
            if match["bake"] is not None:
                step["bake_s"] = int(match["bake"])
            steps.append(step)
        return steps

    def clean_servers(self) -> list[str]:
        return [s for s in re.split(r"[\s,;]+", self.cleaned_data["servers"]) if s]

    def clean_start_at(self) -> str | None:
        """A datetime-local value (no zone) is UTC; the service checks that it is ahead."""
        text = self.cleaned_data["start_at"].strip()
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError("Give a date and time, such as 2026-12-01T18:00.") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.isoformat()

    def body(self) -> dict:
        """The cleaned input as the API's JSON body. Inputs left blank are left out, so the
        service's defaults apply; a blank error ratio means no error-ratio gate."""
        d = self.cleaned_data
        data: dict = {"endpoint": d["endpoint"], "strategy": d["strategy"], "placement": d["placement"]}
        green = d["green"].strip()
        if green:
            number = green[1:] if green[:1] in "vV" and green[1:].isdigit() else green
            if number.isascii() and number.isdigit():
                data["version"] = int(number)
            else:
                data["label"] = green
        for name in STRATEGY_FIELDS[d["strategy"]]:
            value = d[name] if name == "steps" else _number(d[name])
            if value is not None:
                data[name] = value
        if d["strategy"] == "steps" and "steps" not in data:
            data["steps"] = []  # the service says what a step list looks like
        if d["placement"] == PlacementMode.NEW_SERVERS:
            data["servers"] = d["servers"]
        gates: dict = {"max_error_ratio": _number(d["max_error_ratio"]), "guard": d["guard"]}
        for name in ("max_p99_ms", "max_p99_ratio", "min_requests", "interval_s", "window_s", "failures_to_breach"):
            value = _number(d[name])
            if value is not None:
                gates[name] = value
        custom = []
        self.custom_rows_used = []
        for i in range(spec.MAX_CUSTOM):
            name, query, limit = (d[f"custom-{i}-{p}"].strip() for p in ("name", "query", "max"))
            if not (name or query or limit):
                continue  # a blank row
            custom.append({"name": name, "query": query, "max": _number(limit)})
            self.custom_rows_used.append(i)
        if custom:
            gates["custom"] = custom
        data["gates"] = gates
        data["approval_required"] = d["approval_required"]
        for name in ("deadline_s", "rollback_window_s"):
            value = _number(d[name])
            if value is not None:
                data[name] = value
        if d["start_at"]:
            data["start_at"] = d["start_at"]
        data["reason"] = d["reason"]
        return data

    # -- the service's refusal, next to its input ---------------------------------------------

    def refuse(self, exc: Exception) -> None:
        """Put a refusal of `deployment_plan` / `deployment_create` on the form and keep its
        status (400 bad input, 403 role, 409 conflict or quota)."""
        if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
            pairs = [(key, m) for key, messages in exc.message_dict.items() for m in messages]
            self.status_code = 400
        elif isinstance(exc, ServiceError):
            pairs = [(exc.field, exc.message)]
            self.status_code = exc.status_code
        elif isinstance(exc, PermissionDenied):
            pairs = [(None, str(exc) or "You may not do that.")]
            self.status_code = 403
        else:
            pairs = [(None, m) for m in getattr(exc, "messages", [str(exc)])]
            self.status_code = 400
        sent_steps = list(self.cleaned_data.get("steps") or [])  # add_error drops the field's cleaned value
        for key, message in pairs:
            self._place(key, message, sent_steps)

    def _place(self, key: str | None, message: str, sent_steps: list[dict]) -> None:
        steps = _STEP_ERROR.match(key or "")
        custom = _CUSTOM_ERROR.match(key or "")
        if steps:
            index = int(steps["index"])
            step = sent_steps[index] if index < len(sent_steps) else None
            what = f" ({step['percent']}{':' + str(step['bake_s']) if 'bake_s' in step else ''})" if step else ""
            self.add_error("steps", f"Step {index + 1}{what}: {message}")
        elif custom and int(custom["index"]) < len(self.custom_rows_used):
            row = self.custom_rows_used[int(custom["index"])]
            self.add_error(f"custom-{row}-{custom['part'] or 'query'}", message)
        elif key in ("version", "label"):
            self.add_error("green", message)
        elif key == "gpus":  # over the quota: the surge comes from the placement
            self.add_error("placement", message)
        elif key and key.startswith("gates.") and key[6:] in GATE_INPUTS:
            self.add_error(key[6:], message)
        elif key == "gates":
            self.group_errors["gates"].append(message)
        elif key and key.startswith("gates."):
            self.group_errors["custom" if key.startswith("gates.custom") else "gates"].append(message)
        elif key in self.fields:
            self.add_error(key, message)
        elif key and key not in ("__all__", "non_field_errors", "body"):
            self.add_error(None, f"{key}: {message}")
        else:
            self.add_error(None, message)

    @property
    def error_count(self) -> int:
        return sum(len(e) for e in self.errors.values()) + sum(len(e) for e in self.group_errors.values())
