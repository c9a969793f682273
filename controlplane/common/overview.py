"""The overview's reads: what is moving and what it costs, for the teams the user may see.

Every read here is a fixed number of queries, whatever the size of the data: one aggregate for
the fleet, two for the gateway replicas, three for the deployments (active, scheduled, and the
latest evaluation of each gate of every active deployment), one for the audit events, three for
the quota bars. Lists are cut at a fixed length (one row more is fetched to know that there are
more), so the page costs the same with 5,000 past deployments as with none.

`progress` and `gate_text` are pure: no ORM, no clock of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Case, Count, IntegerField, Max, Q, Value, When

from controlplane.accounts.selectors import visible_teams
from controlplane.audit.selectors import audit_events_visible
from controlplane.deployments.machine import ACTIVE, PREPARING, State
from controlplane.deployments.models import Deployment, GateEvaluation
from controlplane.endpoints.models import GatewayReplica, RoutingTableState
from controlplane.endpoints.replicas import LIVE_WITHIN_S
from controlplane.fleet.models import Server, ServerStatus
from controlplane.quotas.ui import quota_bars

ACTIVE_SHOWN = 20  # a rollout holds its endpoint, so there is at most one per endpoint; more: the Deployments page
SCHEDULED_SHOWN = 10
REPLICAS_READ = 200  # replicas unseen for an hour are pruned, so this is all of them in practice
REPLICAS_SHOWN = 8  # the worst first: silent, then furthest behind
AUDIT_SHOWN = 10
QUOTA_TEAMS_SHOWN = 12  # a platform admin sees every team; the Team page has the rest

# On the overview: every deployment that is not over and has started (scheduled ones are listed apart).
MOVING_STATES = sorted(s.value for s in ACTIVE - {State.SCHEDULED})


# -- fleet -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetHealth:
    total: int
    up: int
    not_ready: int
    down: int
    unknown: int
    draining: int


def fleet_health() -> FleetHealth:
    """Servers by status, and how many are draining. One query."""
    counts = Server.objects.aggregate(
        total=Count("id"),
        up=Count("id", filter=Q(status=ServerStatus.UP)),
        not_ready=Count("id", filter=Q(status=ServerStatus.NOT_READY)),
        down=Count("id", filter=Q(status=ServerStatus.DOWN)),
        unknown=Count("id", filter=Q(status=ServerStatus.UNKNOWN)),
        draining=Count("id", filter=Q(draining_since__isnull=False)),
    )
    return FleetHealth(**counts)


@dataclass(frozen=True)
class ReplicaLine:
    replica_id: str
    address: str
    table_version: int
    behind: int  # routing-table versions behind the published one
    seconds_since_seen: int
    live: bool  # reported within LIVE_WITHIN_S


@dataclass(frozen=True)
class GatewayHealth:
    table_version: int  # the published routing table
    published_at: datetime | None
    replicas: tuple[ReplicaLine, ...]  # the worst REPLICAS_SHOWN
    total: int
    live: int
    behind: int  # live replicas serving an older table
    lag_s: int  # how long the oldest live replica has been behind: since the current table was published
    published_s: int | None  # seconds since the current table was published

    @property
    def more(self) -> int:
        return self.total - len(self.replicas)


def gateway_health(now: datetime) -> GatewayHealth:
    """Each gateway replica's routing-table lag: versions behind the published table and, while any
    live replica is behind, for how long. Two queries."""
    version, published_at = RoutingTableState.objects.filter(pk=1).values_list("version", "published_at").first() or (0, None)
    lines = []
    for replica_id, address, table_version, last_seen_at in GatewayReplica.objects.order_by("replica_id").values_list(
            "replica_id", "address", "table_version", "last_seen_at")[:REPLICAS_READ]:
        seen = max(0, int((now - last_seen_at).total_seconds()))
        lines.append(ReplicaLine(replica_id, address, table_version, max(0, version - table_version), seen,
                                 seen <= LIVE_WITHIN_S))
    behind = sum(1 for r in lines if r.live and r.behind)
    published_s = max(0, int((now - published_at).total_seconds())) if published_at else None
    worst = sorted(lines, key=lambda r: (r.live, -r.behind, r.replica_id))[:REPLICAS_SHOWN]
    return GatewayHealth(table_version=version, published_at=published_at, replicas=tuple(worst), total=len(lines),
                         live=sum(r.live for r in lines), behind=behind, lag_s=(published_s or 0) if behind else 0,
                         published_s=published_s)


# -- deployments -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    percent: float  # of the steps done, 0-100
    step: int  # the current step, from 1; 0 before the first
    steps: int
    tone: str  # run, wait, done or bad: the bar's colour
    phase: str  # what it does now, in words
    bake_left_s: int | None  # while baking

    @property
    def ticks(self) -> list[float]:
        """Where each step ends on the bar, in percent (the last one is the bar's end)."""
        return [round(100.0 * k / self.steps, 3) for k in range(1, self.steps)]

    @property
    def text(self) -> str:
        where = f"step {self.step} of {self.steps}" if self.step else f"{self.steps} step{'s' if self.steps != 1 else ''}"
        return f"{where}, {self.phase}"


PHASES = {
    State.SCHEDULED: "scheduled", State.PENDING: "waiting for a worker", State.VALIDATING: "validating",
    State.PROVISIONING: "loading green", State.VERIFYING: "verifying green", State.SHIFTING: "shifting traffic",
    State.BAKING: "baking", State.ANALYZING: "judging the gates", State.PAUSED: "paused",
    State.AWAITING_APPROVAL: "awaiting approval", State.PROMOTING: "promoting",
    State.SUCCEEDED: "succeeded, blue kept for the rollback window", State.RETIRED: "retired",
    State.ROLLING_BACK: "rolling back", State.ROLLED_BACK: "rolled back", State.ABORTED: "aborted",
    State.FAILED: "failed", State.ROLLBACK_FAILED: "ROLLBACK FAILED", State.CANCELLED: "cancelled",
}
_WAITING = {State.PAUSED, State.AWAITING_APPROVAL}
_DONE = {State.PROMOTING, State.SUCCEEDED, State.RETIRED}
_BAD = {State.ROLLING_BACK, State.ROLLBACK_FAILED, State.ROLLED_BACK, State.ABORTED, State.FAILED}
# The current step's bake has run: its gates are judged, or it waits on them.
_STEP_BAKED = {State.ANALYZING, State.PAUSED}


def progress(*, state: str, step_index: int, steps: list[dict], step_started_at: datetime | None,
             now: datetime) -> Progress:
    """How far a deployment is through its traffic steps. A step counts as done once its bake has
    run; a baking step counts by the share of its bake that has passed."""
    state = State(state)
    n = max(len(steps), 1)
    i = min(max(step_index, 0), n - 1)
    started = step_index >= 0 and state not in PREPARING | {State.SCHEDULED}
    bake_left = None
    if state == State.SCHEDULED or state in PREPARING:
        done = 0.0
    elif state in _DONE or state == State.AWAITING_APPROVAL:
        done = float(n)
    else:
        done = float(i)
        if state in _STEP_BAKED:
            done += 1
        elif state == State.BAKING and steps:
            bake_s = float(steps[i].get("bake_s") or 0)
            elapsed = (now - step_started_at).total_seconds() if step_started_at else 0.0
            done += min(max(elapsed / bake_s, 0.0), 1.0) if bake_s > 0 else 1.0
            bake_left = max(0, round(bake_s - elapsed)) if bake_s > 0 else 0
    tone = "bad" if state in _BAD else "wait" if state in _WAITING else "done" if state in _DONE else "run"
    return Progress(percent=round(100.0 * done / n, 1), step=i + 1 if started else 0, steps=n, tone=tone,
                    phase=PHASES[state], bake_left_s=bake_left)


GATE_NAMES = {"error_ratio": "Error rate", "p99_ms": "p99 latency", "p99_vs_blue": "p99 against blue",
              "metrics": "Metrics"}
LIMIT_AT = 80.0  # where a gate's limit sits on its little bar, in percent: a value over it still shows


def gate_label(gate: str) -> str:
    return GATE_NAMES.get(gate) or gate.removeprefix("custom:")


def gate_text(gate: str, value: float | None) -> str:
    """A gate's value (or limit) in its unit: error rate in percent, p99 in ms, the ratio to blue as ×."""
    if value is None:
        return "—"
    if gate == "error_ratio":
        return f"{value * 100:.3g}%"
    if gate == "p99_ms":
        return f"{value:.4g} ms"
    if gate == "p99_vs_blue":
        return f"{value:.3g}×"
    return f"{value:.4g}"


@dataclass(frozen=True)
class GateLine:
    gate: str
    limit: float
    value: float | None = None
    verdict: str = ""  # pass, fail, no_data; "" before the first evaluation
    requests: float = 0
    step_index: int = -1
    at: datetime | None = None
    detail: str = ""

    @property
    def label(self) -> str:
        return gate_label(self.gate)

    @property
    def value_text(self) -> str:
        return gate_text(self.gate, self.value)

    @property
    def limit_text(self) -> str:
        return gate_text(self.gate, self.limit)

    @property
    def fill(self) -> float:
        """The value's bar, in percent, with the limit at LIMIT_AT."""
        if self.value is None:
            return 0.0
        if self.limit <= 0:
            return 100.0 if self.value > 0 else 0.0
        return round(min(100.0, LIMIT_AT * self.value / self.limit), 2)


def configured_gates(gates: dict) -> list[tuple[str, float]]:
    """(gate, limit) of each gate a deployment judges, named as its evaluations are."""
    found = []
    for key, gate in (("max_error_ratio", "error_ratio"), ("max_p99_ms", "p99_ms"), ("max_p99_ratio", "p99_vs_blue")):
        if gates.get(key) is not None:
            found.append((gate, float(gates[key])))
    found += [(f"custom:{c['name']}", float(c["max"])) for c in gates.get("custom", ())]
    return found


def gate_lines(gates: dict, latest: dict[str, GateEvaluation]) -> list[GateLine]:
    """Each configured gate with its latest evaluation (value against the limit it was judged
    by), then any other gate evaluated (such as `metrics` when Prometheus did not answer)."""
    lines = []
    for gate, limit in configured_gates(gates):
        e = latest.get(gate)
        lines.append(_line(e) if e is not None else GateLine(gate=gate, limit=limit))
    named = {line.gate for line in lines}
    lines += [_line(e) for gate, e in sorted(latest.items()) if gate not in named]
    return lines


def _line(e: GateEvaluation) -> GateLine:
    return GateLine(gate=e.gate, limit=e.limit, value=e.value, verdict=e.verdict, requests=e.requests,
                    step_index=e.step_index, at=e.at, detail=e.detail)


@dataclass(frozen=True)
class MovingDeployment:
    deployment: Deployment
    progress: Progress
    gates: list[GateLine] = field(default_factory=list)


@dataclass(frozen=True)
class Moving:
    active: list[MovingDeployment]
    more_active: bool
    scheduled: list[Deployment]
    more_scheduled: bool

    @property
    def rollback_failed(self) -> int:
        return sum(m.deployment.state == State.ROLLBACK_FAILED for m in self.active)


def _deployments(user):
    return (
        Deployment.objects.filter(team__in=visible_teams(user))
        .select_related("team", "endpoint__team", "model", "blue_version", "green_version", "created_by")
        # plan and servers can be long and the overview shows neither
        .defer("plan", "servers", "blue_placements", "reason")
    )


def latest_evaluations(deployment_ids: list[int]) -> dict[int, dict[str, GateEvaluation]]:
    """The latest evaluation of each gate of each deployment: {deployment id: {gate: evaluation}}.
    One query (the newest id per deployment and gate, as a subquery), however many deployments."""
    if not deployment_ids:
        return {}
    newest = (GateEvaluation.objects.filter(deployment_id__in=deployment_ids)
              .values("deployment_id", "gate").annotate(newest=Max("id")).values("newest"))
    found: dict[int, dict[str, GateEvaluation]] = {pk: {} for pk in deployment_ids}
    for e in GateEvaluation.objects.filter(id__in=newest):
        found[e.deployment_id][e.gate] = e
    return found


def deployments_moving(user, *, now: datetime) -> Moving:
    """The user's teams' deployments in progress (a failed rollback first, then the newest), each
    with its progress and its gates' latest values; and the scheduled ones, soonest first.
    Three queries."""
    active = list(
        _deployments(user).filter(state__in=MOVING_STATES)
        .order_by(Case(When(state=State.ROLLBACK_FAILED, then=Value(0)), default=Value(1), output_field=IntegerField()),
                  "-id")[:ACTIVE_SHOWN + 1]
    )
    scheduled = list(_deployments(user).filter(state=State.SCHEDULED).order_by("start_at", "id")[:SCHEDULED_SHOWN + 1])
    shown = active[:ACTIVE_SHOWN]
    latest = latest_evaluations([d.pk for d in shown])
    lines = [
        MovingDeployment(
            deployment=d,
            progress=progress(state=d.state, step_index=d.step_index, steps=d.steps, step_started_at=d.step_started_at,
                              now=now),
            gates=gate_lines(d.gates, latest[d.pk]),
        )
        for d in shown
    ]
    return Moving(active=lines, more_active=len(active) > ACTIVE_SHOWN, scheduled=scheduled[:SCHEDULED_SHOWN],
                  more_scheduled=len(scheduled) > SCHEDULED_SHOWN)


# -- audit and quota -------------------------------------------------------------------------


def audit_recent(user) -> list:
    """The newest events the audit log lets this user see. One query."""
    return list(audit_events_visible(user).defer("before", "after").order_by("-id")[:AUDIT_SHOWN])


@dataclass(frozen=True)
class TeamQuota:
    team: object
    bar: str  # the rendered templates/quotas/_quota_bar.html


def team_quotas(user) -> tuple[list[TeamQuota], bool]:
    """The GPU quota bar of each of the user's teams (the first QUOTA_TEAMS_SHOWN), and whether
    there are more. Three queries."""
    teams = list(visible_teams(user).order_by("slug")[:QUOTA_TEAMS_SHOWN + 1])
    shown = teams[:QUOTA_TEAMS_SHOWN]
    bars = quota_bars(shown)
    return [TeamQuota(team, bars[team.pk]) for team in shown], len(teams) > QUOTA_TEAMS_SHOWN
