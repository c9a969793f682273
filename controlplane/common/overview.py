"""The overview's reads: what is moving and what it costs, for the teams the user may see.

Every read here is a fixed number of queries, whatever the size of the data: one aggregate for
the fleet, two for the gateway replicas, four for the deployments (the user's teams, those in
progress, those scheduled, and the latest evaluation of each gate of every one in progress), one
for the audit events, three for the quota bars. Lists are cut at a fixed length (one row more is fetched to know that there are
more), so the page costs the same with 5,000 past deployments as with none.

A deployment's progress and its gates are shown as its own page shows them
(controlplane/deployments/progress.py); `tone`, `step_ticks` and `gate_fill` add the overview's bars.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Case, Count, IntegerField, Q, Value, When

from controlplane.accounts.selectors import visible_team_ids, visible_teams
from controlplane.audit.selectors import audit_events_visible
from controlplane.deployments.machine import ACTIVE, State
from controlplane.deployments.models import Deployment, GateEvaluation
from controlplane.deployments.selectors import latest_evaluations
from controlplane.deployments.progress import (
    HALTED,
    STEPS_FROM,
    STEPS_TO,
    GateRow,
    Progress,
    deployment_progress,
    gate_board,
)
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


# The bar's colour: a halted rollout (rolled back, failed...) is bad, one waiting on a person or
# on data is amber, a promoted one green; the rest are moving.
_WAITING = {State.PAUSED, State.AWAITING_APPROVAL}
_DONE = {State.PROMOTING, State.SUCCEEDED, State.RETIRED}
LIMIT_AT = 80.0  # where a gate's limit sits on its little bar, in percent: a value over it still shows


def tone(state: str) -> str:
    state = State(state)
    return "bad" if state in HALTED else "wait" if state in _WAITING else "done" if state in _DONE else "run"


def step_ticks(step_count: int) -> list[float]:
    """Where green's preparation and each traffic step end on the progress bar, in percent (the
    deployment page's milestones: progress.STEPS_FROM to STEPS_TO shared by the steps)."""
    if not step_count:
        return []
    slot = (STEPS_TO - STEPS_FROM) / step_count
    return [round(STEPS_FROM + slot * k, 3) for k in range(step_count + 1)]


def gate_fill(value: float | None, limit: float) -> float:
    """A gate value's bar, in percent, with the limit at LIMIT_AT."""
    if value is None:
        return 0.0
    if limit <= 0:
        return 100.0 if value > 0 else 0.0
    return round(min(100.0, LIMIT_AT * value / limit), 2)


@dataclass(frozen=True)
class GateLine:
    row: GateRow  # as the deployment page shows it (progress.gate_board)
    fill: float


def gate_lines(gates: dict, latest: dict[str, GateEvaluation]) -> list[GateLine]:
    """Each configured gate with its latest evaluation, and a bar of its value against the limit it
    was judged by."""
    return [
        GateLine(row, gate_fill(latest[row.name].value, latest[row.name].limit) if row.name in latest else 0.0)
        for row in gate_board(gates, latest)
    ]


@dataclass(frozen=True)
class MovingDeployment:
    deployment: Deployment
    progress: Progress
    gates: list[GateLine] = field(default_factory=list)

    @property
    def tone(self) -> str:
        return tone(self.deployment.state)

    @property
    def ticks(self) -> list[float]:
        return step_ticks(self.progress.step_count)


@dataclass(frozen=True)
class Moving:
    active: list[MovingDeployment]
    more_active: bool
    scheduled: list[Deployment]
    more_scheduled: bool

    @property
    def rollback_failed(self) -> int:
        return sum(m.deployment.state == State.ROLLBACK_FAILED for m in self.active)


# What the overview shows of a deployment. Few joins and narrow rows: the planner's time grows
# fast with the number of joined tables, and a version row carries its file list.
SHOWN_FIELDS = ("id", "state", "strategy", "steps", "gates", "step_index", "step_started_at", "traffic_percent",
                "status_text", "start_at", "endpoint__name", "endpoint__team__slug", "blue_version__version",
                "green_version__version")


def _deployments(team_ids: list[int] | None):
    """``team_ids``: the user's teams, or None for every team (a platform admin)."""
    found = Deployment.objects.select_related("endpoint__team", "blue_version", "green_version").only(*SHOWN_FIELDS)
    return found if team_ids is None else found.filter(team_id__in=team_ids)


def deployments_moving(user, *, now: datetime) -> Moving:
    """The user's teams' deployments in progress (a failed rollback first, then the newest), each
    with its progress and its gates' latest values; and the scheduled ones, soonest first.
    Four queries (three for a platform admin)."""
    team_ids = visible_team_ids(user)
    active = list(
        _deployments(team_ids).filter(state__in=MOVING_STATES)
        .order_by(Case(When(state=State.ROLLBACK_FAILED, then=Value(0)), default=Value(1), output_field=IntegerField()),
                  "-id")[:ACTIVE_SHOWN + 1]
    )
    scheduled = list(_deployments(team_ids).filter(state=State.SCHEDULED).select_related("created_by")
                     .only(*SHOWN_FIELDS, "created_by__username").order_by("start_at", "id")[:SCHEDULED_SHOWN + 1])
    shown = active[:ACTIVE_SHOWN]
    latest = latest_evaluations([d.pk for d in shown])
    lines = [
        MovingDeployment(
            deployment=d,
            progress=deployment_progress(state=d.state, steps=d.steps, step_index=d.step_index,
                                         step_started_at=d.step_started_at, traffic_percent=d.traffic_percent, now=now),
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
