"""`switchyard deploy`, `status` and the deployment actions, for CI. Standard library only.

Everything goes through the REST API (`cli.api`): the server checks the request and keeps the
defaults, so `deploy` sends only the fields given on the command line.

Exit codes (CI acts on them; argparse's own 2 for a usage error is replaced by 3, because 2
means rolled back here):

    0  success: `deploy --wait` / `status --wait` reached succeeded (or retired); any other
       command: the server accepted it
    2  rolled back: the deployment ended rolled_back, aborted or cancelled
    3  failure: it ended failed or rollback_failed, --timeout passed, the server was unreachable
       or answered 5xx, or the command line was wrong
    4  refusal: the server answered 4xx (bad input, forbidden, not found, a conflict such as
       another active deployment on the endpoint, the quota, or an action the state does not allow)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, NoReturn

from cli.api import ApiClient, ApiRefused, ApiUnavailable

EXIT_OK, EXIT_ROLLED_BACK, EXIT_FAILED, EXIT_REFUSED = 0, 2, 3, 4
EXIT_INTERRUPTED = 130

SUCCEEDED = frozenset({"succeeded", "retired"})
ROLLED_BACK = frozenset({"rolled_back", "aborted", "cancelled"})
FAILED = frozenset({"failed", "rollback_failed"})
END_STATES = SUCCEEDED | ROLLED_BACK | FAILED
WAITING_FOR_PEOPLE = frozenset({"paused", "awaiting_approval"})
# States in which the line shows green's share of traffic, and those that show the step.
SHOWS_TRAFFIC = frozenset({"shifting", "baking", "analyzing", "paused", "awaiting_approval", "promoting", "succeeded",
                           "rolling_back"})
SHOWS_STEP = frozenset({"shifting", "baking", "analyzing", "paused", "awaiting_approval"})
# States whose line says why (the transition's reason, or the deployment's status text).
SHOWS_REASON = frozenset({"paused", "awaiting_approval", "rolling_back", "rolled_back", "aborted", "failed",
                          "rollback_failed", "cancelled"})
PERSON_EVENTS = ("promote", "rollback", "abort", "approve", "retry", "resume", "cancel")
ACTIONS = {
    "promote": "skip the remaining steps: 100% to green and the label moves",
    "rollback": "traffic back to blue, then green unloaded (after success: the fast rollback)",
    "abort": "stop: traffic back to blue, green unloaded; ends aborted",
    "approve": "approve the promotion of a deployment awaiting approval",
    "retry": "start a failed deployment (or a failed rollback) again",
    "resume": "judge the gates again after a pause",
    "cancel": "cancel a scheduled deployment before it starts",
}
COMMANDS = ("deploy", "status", *ACTIONS)

UNSET = object()  # a gate limit not given (None is given: `none`, sent as null)
POLL_S = 1.0
UNAVAILABLE_GRACE_S = 30.0  # while waiting, the server may be unreachable this long before we give up
REQUEST_TIMEOUT_S = 30.0

EPILOG = """exit codes:
  0  success (--wait: succeeded or retired; otherwise: the server accepted the command)
  2  rolled back (rolled_back, aborted or cancelled)
  3  failure (failed, rollback_failed, --timeout passed, server unreachable or 5xx, bad usage)
  4  refused by the server (4xx: bad input, forbidden, not found, conflict, quota)

environment: SWITCHYARD_URL (such as https://switchyard.example.com) and SWITCHYARD_TOKEN
(a bearer token with the deploy scope); --url and --token override them."""


class UsageError(Exception):
    """A command line we cannot run (exit 3)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 3: exit 2 means "rolled back" to CI."""

    json_errors = False

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # a CI script's --max-err must not change meaning later
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if Parser.json_errors:
            _print_json({"error": f"usage: {message}", "status": None, "fields": {}, "exit": EXIT_FAILED})
        else:
            self.print_usage(sys.stderr)
            print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_FAILED)


# -- parsing --------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


def _number_or_none(text: str) -> float | None:
    """A gate's limit; `none` turns the gate off (sent as null)."""
    if text.strip().lower() in ("none", "null", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number (or none): {text!r}") from None


def _steps(text: str) -> list[dict]:
    """`10:60,50:60,100:0` → [{"percent": 10, "bake_s": 60}, ...]; `10,50` leaves bake_s out."""
    steps = []
    for part in text.split(","):
        percent, sep, bake = part.strip().partition(":")
        try:
            step = {"percent": int(percent)}
            if sep:
                step["bake_s"] = int(bake)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"give steps as PERCENT:BAKE_SECONDS separated by commas, such as 10:60,50:60,100:0; not {part!r}") from None
        steps.append(step)
    return steps


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give server names separated by commas, such as gpu-1,gpu-2")
    return names


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection and output")
    g.add_argument("--url", help="Switchyard's base URL (default: $SWITCHYARD_URL)")
    g.add_argument("--token", help="a bearer token (default: $SWITCHYARD_TOKEN; prefer the variable, "
                                   "command lines are visible to other processes)")
    g.add_argument("--json", action="store_true", help="machine-readable output on stdout (JSON, or JSON lines while waiting)")


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="follow the deployment, one line per state change, until it ends; exit with its outcome")
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help="with --wait: give up after this long (exit 3; the deployment goes on)")
    parser.add_argument("--poll-interval", type=_seconds, default=POLL_S, help=argparse.SUPPRESS)


def build_parser() -> Parser:
    parser = Parser(prog="switchyard", description="Deploy to Switchyard endpoints from CI.", epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("deploy", help="start a deployment of a version to an endpoint", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Move ENDPOINT (team.name, such as vision.fraud-scorer) from the version it serves "
                                   "(blue) to another (green), step by step, judged by gates. Only the options given "
                                   "are sent; the server has the defaults.")
    d.add_argument("endpoint", metavar="ENDPOINT", help="the endpoint's public name, such as vision.fraud-scorer")
    green = d.add_mutually_exclusive_group(required=True)
    green.add_argument("--version", type=_positive_int, metavar="N", help="green, by version number")
    green.add_argument("--label", metavar="L", help="green, by label (such as canary)")
    r = d.add_argument_group("rollout")
    r.add_argument("--strategy", choices=("canary", "linear", "all_at_once", "steps"),
                   help="default canary (steps when --steps is given)")
    r.add_argument("--canary-percent", type=_int, metavar="P", help="canary: green's share (default 10)")
    r.add_argument("--step-percent", type=_int, metavar="P", help="linear: the share added each step (default 25)")
    r.add_argument("--bake", type=_int, metavar="SECONDS", help="seconds each step runs before its gates are judged (default 60)")
    r.add_argument("--steps", type=_steps, metavar="P:S,...", help="explicit steps, such as 10:60,50:60,100:0")
    r.add_argument("--placement", choices=("same_servers", "new_servers"),
                   help="green beside blue (default), or on other servers (--servers)")
    r.add_argument("--servers", type=_names, metavar="A,B", help="new_servers: the servers green goes on")
    gates = d.add_argument_group("gates (those not given keep the server's defaults)")
    gates.add_argument("--max-error-ratio", type=_number_or_none, default=UNSET, metavar="R",
                       help="green's 5xx share at most this (default 0.05; none turns it off)")
    gates.add_argument("--max-p99-ms", type=_number_or_none, default=UNSET, metavar="MS", help="green's p99 latency at most this")
    gates.add_argument("--max-p99-ratio", type=_number_or_none, default=UNSET, metavar="R", help="green's p99 over blue's at most this")
    gates.add_argument("--min-requests", type=_int, metavar="N", help="fewer requests in the window is no data (default 50)")
    gates.add_argument("--interval", type=_int, metavar="SECONDS", help="between evaluations (default 10)")
    gates.add_argument("--window", type=_int, metavar="SECONDS", help="how far back each evaluation looks (default 60)")
    gates.add_argument("--failures-to-breach", type=_int, metavar="N", help="failed evaluations in a row that roll back (default 2)")
    gates.add_argument("--no-guard", action="store_true", help="the gateway does not stop sending to a failing green at once")
    o = d.add_argument_group("control")
    o.add_argument("--approval", action="store_true", help="a person approves the promotion after the last step")
    o.add_argument("--deadline", type=_int, metavar="SECONDS", help="roll back if not promoted within this long")
    o.add_argument("--rollback-window", type=_int, metavar="SECONDS", help="blue stays loaded this long after success (default 600)")
    o.add_argument("--start-at", metavar="ISO", help="start later, such as 2026-12-01T18:00:00Z")
    o.add_argument("--reason", help="why; kept in the audit log")
    o.add_argument("--plan", action="store_true", help="only show the plan (steps, duration, GPU devices); start nothing")
    _wait_options(d)
    _common(d)

    s = sub.add_parser("status", help="show a deployment (--wait: follow it until it ends)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("id", type=_positive_int, metavar="ID", help="the deployment's id")
    _wait_options(s)
    _common(s)

    for name, text in ACTIONS.items():
        a = sub.add_parser(name, help=text, description=f"{name}: {text}.", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        a.add_argument("id", type=_positive_int, metavar="ID", help="the deployment's id")
        a.add_argument("--reason", default=None, help="why; kept in the audit log")
        _common(a)
    return parser


def deploy_body(args: argparse.Namespace) -> dict:
    """The request body: only what the command line gave."""
    body: dict[str, Any] = {"endpoint": args.endpoint}
    if args.version is not None:
        body["version"] = args.version
    if args.label is not None:
        body["label"] = args.label
    strategy = args.strategy or ("steps" if args.steps is not None else None)
    simple = {
        "strategy": strategy, "canary_percent": args.canary_percent, "step_percent": args.step_percent,
        "bake_s": args.bake, "steps": args.steps, "placement": args.placement, "servers": args.servers,
        "deadline_s": args.deadline, "rollback_window_s": args.rollback_window, "start_at": args.start_at,
        "reason": args.reason,
    }
    body.update({k: v for k, v in simple.items() if v is not None})
    if args.approval:
        body["approval_required"] = True
    gates: dict[str, Any] = {}
    for key in ("max_error_ratio", "max_p99_ms", "max_p99_ratio"):
        if getattr(args, key) is not UNSET:  # a limit of none is given too, and sent as null
            gates[key] = getattr(args, key)
    for flag, key in (("min_requests", "min_requests"), ("interval", "interval_s"), ("window", "window_s"),
                      ("failures_to_breach", "failures_to_breach")):
        if getattr(args, flag) is not None:
            gates[key] = getattr(args, flag)
    if args.no_guard:
        gates["guard"] = False
    if gates:
        body["gates"] = gates
    return body


# -- output ---------------------------------------------------------------------------------------


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, sort_keys=False, separators=(",", ":")), flush=True)


def _utc(text: str | None) -> str:
    """An API time as 2026-12-01T18:00:03Z (now, when it is missing or unreadable)."""
    when = None
    if isinstance(text, str):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            when = None
    if when is None:
        when = datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Output:
    def __init__(self, json_mode: bool):
        self.json = json_mode

    def text(self, line: str) -> None:
        if not self.json:
            print(line, flush=True)

    def note(self, line: str) -> None:
        """Something for people, never on the JSON stdout."""
        print(line, file=sys.stderr, flush=True)

    def obj(self, obj: Any) -> None:
        if self.json:
            _print_json(obj)

    def error(self, message: str, *, status: int | None, fields: dict | None, code: int) -> int:
        if self.json:
            _print_json({"error": message, "status": status, "fields": fields or {}, "exit": code})
        else:
            print(f"switchyard: {message}", file=sys.stderr, flush=True)
            for name, messages in (fields or {}).items():
                for m in messages:
                    if f"{name}: {m}" not in message:  # the detail often says it already
                        print(f"  {name}: {m}", file=sys.stderr, flush=True)
        return code

    def refused(self, exc: ApiRefused) -> int:
        what = {400: "bad input", 401: "not authenticated", 403: "forbidden", 404: "not found", 409: "conflict",
                413: "too large"}.get(exc.status, "refused")
        return self.error(f"refused ({exc.status} {what}): {exc.detail}", status=exc.status, fields=exc.fields,
                          code=EXIT_REFUSED)

    def unavailable(self, exc: ApiUnavailable) -> int:
        return self.error(f"server unavailable: {exc.message}", status=exc.status, fields={}, code=EXIT_FAILED)


def exit_code_of(state: str) -> int:
    if state in SUCCEEDED:
        return EXIT_OK
    if state in ROLLED_BACK:
        return EXIT_ROLLED_BACK
    return EXIT_FAILED


def replay(history: list[dict], steps: list[dict]) -> list[tuple[int | None, int | None]]:
    """For each history entry, the step index and green's traffic share right after it, worked out
    the way the engine moves them (the first shifting is step 0, each pass to shifting the next;
    promoting is 100%, rolling back 0%; a retry starts over)."""
    out: list[tuple[int | None, int | None]] = []
    step: int | None = None
    traffic: int | None = None
    for entry in history:
        to, frm = entry.get("to_state"), entry.get("from_state")
        if to == "pending":
            step, traffic = None, 0
        elif to == "shifting":
            step = 0 if step is None or frm != "analyzing" else step + 1
            if 0 <= step < len(steps):
                traffic = steps[step].get("percent")
        elif to == "promoting":
            traffic = 100
        elif to == "rolling_back":
            traffic = 0
        out.append((step, traffic))
    return out


def _describe(d: dict) -> str:
    steps = d.get("steps") or []
    shape = ", ".join(f"{s.get('percent')}% for {s.get('bake_s', 0)} s" for s in steps)
    return (f"{d.get('endpoint')} v{d.get('blue_version')} → v{d.get('green_version')}, "
            f"{d.get('strategy')} ({shape})")


class Follower:
    """Prints a deployment's new history entries: one line (or JSON line) per state change."""

    def __init__(self, out: Output, seen: int = 0):
        self.out = out
        self.seen = seen

    def emit(self, d: dict) -> None:
        history = d.get("history") or []
        steps = d.get("steps") or []
        replayed = replay(history, steps)
        for i in range(self.seen, len(history)):
            entry = history[i]
            step, traffic = replayed[i]
            latest = i == len(history) - 1 and entry.get("to_state") == d.get("state")
            if latest:
                traffic = d.get("traffic_percent", traffic)
                live_step = d.get("step_index")
                step = live_step if isinstance(live_step, int) and live_step >= 0 else step
            self._line(d, entry, step, traffic, latest)
        self.seen = len(history)

    def _line(self, d: dict, entry: dict, step: int | None, traffic: int | None, latest: bool) -> None:
        state = entry.get("to_state", "")
        steps = d.get("steps") or []
        reason = entry.get("reason") or ""
        if latest and state in WAITING_FOR_PEOPLE and d.get("status_text"):
            reason = d["status_text"]
        by_person = entry.get("event") in PERSON_EVENTS
        shown_step = step + 1 if step is not None and state in SHOWS_STEP else None
        shown_traffic = traffic if state in SHOWS_TRAFFIC else None
        if self.out.json:
            self.out.obj({
                "type": "transition", "deployment": d.get("id"), "at": _utc(entry.get("at")),
                "from_state": entry.get("from_state") or None, "state": state, "event": entry.get("event"),
                "actor": entry.get("actor"), "source": entry.get("source"), "reason": reason,
                "traffic_percent": shown_traffic, "step": shown_step, "steps": len(steps),
            })
            return
        parts = [f"{_utc(entry.get('at'))} deployment {d.get('id')} {state}"]
        if shown_traffic is not None:
            parts.append(f"{shown_traffic}% to green")
        if shown_step is not None:
            parts.append(f"(step {shown_step}/{len(steps)})")
        if by_person:
            parts.append(f"{entry.get('event')} by {entry.get('actor')}" + (f": {reason}" if reason else ""))
        elif reason and state in SHOWS_REASON:
            parts.append(reason)
        self.out.text("  ".join(parts))


# -- commands -------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> ApiClient:
    url = args.url or os.environ.get("SWITCHYARD_URL", "")
    token = args.token or os.environ.get("SWITCHYARD_TOKEN", "")
    if not url:
        raise UsageError("no server: set SWITCHYARD_URL (such as https://switchyard.example.com) or give --url")
    if not token:
        raise UsageError("no token: set SWITCHYARD_TOKEN (a token with the deploy scope) or give --token")
    try:
        return ApiClient(url, token, timeout=REQUEST_TIMEOUT_S)
    except ValueError as exc:
        raise UsageError(f"SWITCHYARD_URL / --url: {exc}") from None


def wait_for_end(client: ApiClient, d: dict, out: Output, follower: Follower, *, timeout: float | None,
                 poll_s: float) -> int:
    """Poll until the deployment ends; print each state change once. Returns the exit code."""
    started = time.monotonic()
    deadline = started + timeout if timeout else None
    down_since: float | None = None
    people_noted: set[tuple[str, int]] = set()
    while True:
        follower.emit(d)
        state = d.get("state", "")
        if state in END_STATES:
            out.obj(d)
            code = exit_code_of(state)
            out.text(_final_text(d, code))
            return code
        if state in WAITING_FOR_PEOPLE and (state, len(d.get("history") or [])) not in people_noted:
            people_noted.add((state, len(d.get("history") or [])))
            actions = ", ".join(f"switchyard {a} {d.get('id')}" for a in d.get("actions") or []
                                if a in ("approve", "resume", "promote", "rollback"))
            out.note(f"deployment {d.get('id')} is {state.replace('_', ' ')} and waits for a person"
                     + (f" ({actions})" if actions else "") + "; still waiting")
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return _timed_out(out, d, timeout)
        time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - now)))
        remaining = None if deadline is None else deadline - time.monotonic()
        request_timeout = REQUEST_TIMEOUT_S if remaining is None else max(1.0, min(REQUEST_TIMEOUT_S, remaining))
        try:
            d = client.get(f"/deployments/{d['id']}/", timeout=request_timeout)
            if down_since is not None:
                out.note(f"switchyard: the server answers again after {time.monotonic() - down_since:.0f} s")
            down_since = None
        except ApiUnavailable as exc:
            if down_since is None:
                down_since = time.monotonic()
                out.note(f"switchyard: {exc.message}; retrying for up to {UNAVAILABLE_GRACE_S:.0f} s")
            if time.monotonic() - down_since >= UNAVAILABLE_GRACE_S:
                return out.unavailable(exc)
            if deadline is not None and time.monotonic() >= deadline:
                return _timed_out(out, d, timeout)


def _timed_out(out: Output, d: dict, timeout: float | None) -> int:
    state = d.get("state", "")
    return out.error(
        f"timed out after {timeout:g} s: deployment {d.get('id')} is still {state.replace('_', ' ')} "
        f"(it goes on; `switchyard abort {d.get('id')}` stops it)",
        status=None, fields={}, code=EXIT_FAILED)


def _final_text(d: dict, code: int) -> str:
    state = d.get("state", "")
    if code == EXIT_OK:
        return f"deployment {d.get('id')} {state}: {d.get('endpoint')} serves v{d.get('green_version')}"
    cause = f" (cause: {d['cause']})" if d.get("cause") else ""
    return (f"deployment {d.get('id')} {state.replace('_', ' ')}{cause}: {d.get('endpoint')} serves "
            f"v{d.get('blue_version')}" + ("" if state != "rollback_failed" else " partly; the rollback did not finish"))


def _plan_text(out: Output, p: dict) -> None:
    plan = p.get("plan") or {}
    servers = ", ".join(p.get("servers") or [])
    out.text(f"plan: {p.get('endpoint')} v{p.get('blue_version')} → v{p.get('green_version')}"
             + (f" on {servers}" if servers else ""))
    out.text(f"  {'phase':<16} {'traffic':>7} {'starts':>8} {'lasts':>8} {'devices':>7}  note")
    for ph in plan.get("phases") or []:
        out.text(f"  {ph.get('name', ''):<16} {ph.get('traffic_percent', 0):>6}% {ph.get('starts_at_s', 0):>7g}s "
                 f"{ph.get('duration_s', 0):>7g}s {ph.get('devices_held', 0):>7}  {ph.get('note', '')}")
    out.text(f"projected {plan.get('projected_s', 0):g} s to promotion; GPU devices: {plan.get('held_now', 0)} held now, "
             f"peak {plan.get('peak', 0)} of a quota of {plan.get('quota', 0)} (surge {plan.get('surge', 0)})"
             + ("; OVER QUOTA: creating it would be refused" if plan.get("over_quota") else ""))


def cmd_deploy(args: argparse.Namespace, out: Output) -> int:
    if args.plan and args.wait:
        raise UsageError("--plan starts nothing, so there is nothing to --wait for")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout is for --wait")
    client = _client(args)
    body = deploy_body(args)
    if args.plan:
        p = client.post("/deployments/plan/", body)
        out.obj(p)
        _plan_text(out, p)
        if (p.get("plan") or {}).get("over_quota"):
            if not out.json:
                out.note("switchyard: the plan exceeds the team's GPU quota; creating it would be refused (409)")
            return EXIT_REFUSED
        return EXIT_OK
    d = client.post("/deployments/", body)
    if not args.wait:
        out.obj(d)
        out.text(f"deployment {d.get('id')} created: {_describe(d)}; {d.get('state')}")
        out.text(f"follow it: switchyard status {d.get('id')} --wait")
        return EXIT_OK
    out.text(f"deployment {d.get('id')} created: {_describe(d)}")
    return wait_for_end(client, d, out, Follower(out), timeout=args.timeout, poll_s=args.poll_interval)


def _status_text(out: Output, d: dict) -> None:
    state = d.get("state", "")
    out.text(f"deployment {d.get('id')}: {_describe(d)}")
    line = f"  state:    {state}"
    if state in SHOWS_TRAFFIC:
        line += f"  {d.get('traffic_percent', 0)}% to green"
    if state in SHOWS_STEP and isinstance(d.get("step_index"), int) and d["step_index"] >= 0:
        line += f"  (step {d['step_index'] + 1}/{len(d.get('steps') or [])})"
    out.text(line)
    if d.get("status_text"):
        out.text(f"  status:   {d['status_text']}")
    if d.get("cause"):
        out.text(f"  cause:    {d['cause']}")
    out.text(f"  actions:  {', '.join(d.get('actions') or []) or 'none'}")
    history = d.get("history") or []
    if history:
        out.text("  history:")
        for h in history:
            why = f"  {h.get('reason')}" if h.get("reason") else ""
            out.text(f"    {_utc(h.get('at'))}  {h.get('from_state') or '-'} → {h.get('to_state')}  "
                     f"{h.get('event')} by {h.get('actor')} ({h.get('source')}){why}")


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout is for --wait")
    client = _client(args)
    d = client.get(f"/deployments/{args.id}/")
    if not args.wait:
        out.obj(d)
        _status_text(out, d)
        return EXIT_OK
    history = d.get("history") or []
    follower = Follower(out, seen=max(0, len(history) - 1))  # the current state first, then each change
    return wait_for_end(client, d, out, follower, timeout=args.timeout, poll_s=args.poll_interval)


def cmd_action(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    body = {} if args.reason is None else {"reason": args.reason}
    d = client.post(f"/deployments/{args.id}/{args.command}/", body)
    out.obj(d)
    state = d.get("state", "")
    extra = f"  {d.get('traffic_percent', 0)}% to green" if state in SHOWS_TRAFFIC else ""
    out.text(f"deployment {d.get('id')}: {args.command} accepted; now {state}{extra}")
    return EXIT_OK


def main(argv: list[str]) -> int:
    """Run one command (``argv`` starts with its name). Returns the exit code."""
    Parser.json_errors = "--json" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(args.json)
    run = {"deploy": cmd_deploy, "status": cmd_status}.get(args.command, cmd_action)
    try:
        return run(args, out)
    except UsageError as exc:
        return out.error(str(exc), status=None, fields={}, code=EXIT_FAILED)
    except ApiRefused as exc:
        return out.refused(exc)
    except ApiUnavailable as exc:
        return out.unavailable(exc)
    except KeyboardInterrupt:
        out.note("switchyard: interrupted; the deployment goes on (switchyard status ID shows it)")
        return EXIT_INTERRUPTED
