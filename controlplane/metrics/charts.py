"""Chart data: a series over a range for a scope the caller may see, from one range query.

The scope is resolved against the caller first (an endpoint or model of another team is a 404,
exactly as a missing one), then the query comes from `queries.chart_query` and runs through the
client. Prometheus being unset, down or refusing is an answer (`status`), never an exception:
a chart says why it has nothing to draw instead of drawing zeros.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace

from django.core.exceptions import ValidationError

from controlplane.accounts.selectors import is_platform_admin, visible_teams
from controlplane.deployments.selectors import deployment_markers
from controlplane.endpoints.selectors import endpoint_get
from controlplane.fleet.selectors import server_get
from controlplane.metrics import queries
from controlplane.metrics.client import (
    MetricsNotConfigured,
    PrometheusError,
    PrometheusUnavailable,
    aligned_range,
    choose_step,
    client_from_settings,
)
from controlplane.registry.selectors import model_get

RANGES = {"15m": 15 * 60, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
OK, NO_DATA, NOT_CONFIGURED, UNAVAILABLE = "ok", "no_data", "not_configured", "unavailable"
STATUSES = (OK, NO_DATA, NOT_CONFIGURED, UNAVAILABLE)
MAX_LINES = 40  # a chart with more lines is unreadable; the message says how many were left out
_SCOPE = re.compile(r"(fleet)|(endpoint|model|server):([1-9][0-9]{0,18})")
INT64_MAX = 2**63 - 1


@dataclass
class Chart:
    series: str
    scope: str
    range: str
    step: int
    status: str
    message: str = ""
    unit: str = ""
    start: int = 0
    end: int = 0
    lines: list[dict] = field(default_factory=list)
    markers: list[dict] = field(default_factory=list)  # [{"t": seconds, "text": ...}]: deployments' shifts and rollbacks


def parse_scope(raw: str) -> tuple[str, int | None]:
    match = _SCOPE.fullmatch(raw or "")
    if not match or (match.group(3) and int(match.group(3)) > INT64_MAX):
        raise ValidationError({"scope": ["Use fleet, endpoint:<id>, model:<id> or server:<id>."]})
    if match.group(1):
        return "fleet", None
    return match.group(2), int(match.group(3))


def resolve_scope(user, raw: str) -> queries.Scope:
    """The scope as the query builder needs it, if the caller may see it (404 otherwise)."""
    kind, pk = parse_scope(raw)
    teams = None if is_platform_admin(user) else tuple(visible_teams(user).values_list("slug", flat=True))
    if kind == "endpoint":
        return queries.Scope(kind, endpoint_get(user, pk).public_name)
    if kind == "model":
        return queries.Scope(kind, model_get(user, pk).triton_name)
    if kind == "server":
        return queries.Scope(kind, server_get(pk).name, teams=teams)
    return queries.Scope(kind, teams=teams)


def chart_series(user, *, series: str, scope: str, range_key: str, now: float | None = None) -> Chart:
    """One chart's data. Bad input is a ValidationError naming the parameter; a scope the caller
    may not see is a 404; Prometheus's troubles are in `status` and `message`."""
    if range_key not in RANGES:
        raise ValidationError({"range": [f"Use one of {', '.join(RANGES)}."]})
    if series not in queries.CHART_SERIES:
        raise ValidationError({"series": [f"Use one of {', '.join(queries.CHART_SERIES)}."]})
    resolved = resolve_scope(user, scope)
    try:
        # A user in no team: the supported pairs are the same; the query would match nothing.
        chart_query = queries.chart_query(series, resolved if resolved.teams != () else replace(resolved, teams=None))
    except queries.Unsupported:
        raise ValidationError({"series": [f"{series} is not charted for {resolved.kind} scopes."]}) from None
    seconds = RANGES[range_key]
    step = choose_step(seconds)
    start, end = aligned_range(seconds, step, now=now)
    chart = Chart(series=series, scope=scope, range=range_key, step=step, status=NO_DATA, unit=chart_query.unit,
                  start=start, end=end)
    kind, pk = parse_scope(scope)
    # Up to now, not to the aligned end: the latest shift is the one people look for.
    chart.markers = deployment_markers(start=start, end=max(end, now or time.time()),
                                       endpoint_id=pk if kind == "endpoint" else None,
                                       model_id=pk if kind == "model" else None)
    if resolved.teams == ():  # a user in no team sees no team's traffic
        chart.message = "You are in no team: there is nothing of yours to chart."
        return chart
    try:
        client = client_from_settings()
        found = client.query_range(chart_query.expr, start=start, end=end, step=step)
    except MetricsNotConfigured:
        chart.status, chart.message = NOT_CONFIGURED, "Metrics are not configured."
        return chart
    except PrometheusUnavailable as exc:
        chart.status, chart.message = UNAVAILABLE, f"Prometheus is not answering: {exc.message}"
        return chart
    except PrometheusError as exc:
        chart.status, chart.message = UNAVAILABLE, f"Prometheus refused the query: {exc.message}"
        return chart
    times = range(start, end + 1, step)
    lines = []
    for matrix in found:
        by_time = {round(t): v for t, v in matrix.points}
        points = [[t, by_time.get(t)] for t in times]
        if all(v is None for _, v in points):
            continue
        labels = {k: matrix.labels[k] for k in chart_query.line_labels if k in matrix.labels}
        lines.append({"label": queries.line_label(chart_query, labels), "labels": labels, "points": points})
    lines.sort(key=lambda line: line["label"])
    if len(lines) > MAX_LINES:
        chart.message = f"Showing {MAX_LINES} of {len(lines)} lines."
        lines = lines[:MAX_LINES]
    chart.lines = lines
    chart.status = OK if lines else NO_DATA
    if not lines:
        chart.message = "No data in this range."
    return chart
