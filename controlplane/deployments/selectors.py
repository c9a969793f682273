"""Reads of deployments, scoped to the caller's teams (another team's deployment is a 404)."""
from django.db import connection
from django.db.models import Count, Max, QuerySet, Window
from django.shortcuts import get_object_or_404

from controlplane.accounts.selectors import is_platform_admin, visible_team_ids, visible_teams
from controlplane.deployments.machine import State
from controlplane.deployments.models import (
    Deployment,
    DeploymentTransition,
    GateEvaluation,
    PlacementMode,
)
from controlplane.placements.models import PlacementTarget, TargetState

RECENT_EVALUATIONS = 100
# The deployment page re-renders its live part every second: it shows the newest rows and counts the rest.
PAGE_TRANSITIONS = 50
PAGE_EVALUATIONS = 30
BANNER_LIMIT = 5


def deployments_visible(user) -> QuerySet[Deployment]:
    return (
        Deployment.objects.filter(team__in=visible_teams(user))
        .select_related("team", "endpoint__team", "model", "blue_version", "green_version", "created_by")
        .order_by("-id")
    )


def deployments_listed(user) -> QuerySet[Deployment]:
    """For the Deployments page's lists: the user's team ids read once, and only the joins the rows
    show. PostgreSQL spent most of the list's time planning the membership subquery beside six
    joins (27 ms for the page, 56 ms for the scheduled list, at 5,000 deployments); a list of ids
    and four joins plan in a few ms."""
    found = (Deployment.objects.select_related("endpoint__team", "blue_version", "green_version", "created_by")
             .order_by("-id"))
    team_ids = visible_team_ids(user)
    return found if team_ids is None else found.filter(team_id__in=team_ids)


def deployment_get(user, pk) -> Deployment:
    return get_object_or_404(deployments_visible(user), pk=pk)


def deployment_history(deployment: Deployment) -> list[DeploymentTransition]:
    return list(deployment.transitions.order_by("id"))


def deployment_evaluations(deployment: Deployment, limit: int = RECENT_EVALUATIONS) -> list[GateEvaluation]:
    """The latest evaluations, oldest first."""
    return list(reversed(deployment.evaluations.order_by("-id")[:limit]))


def _newest_with_total(rows: QuerySet, limit: int) -> tuple[list, int]:
    """The newest ``limit`` rows and how many there are in all, in one query (a window count
    runs before the LIMIT)."""
    found = list(rows.annotate(total=Window(Count("id"))).order_by("-id")[:limit])
    return found, (found[0].total if found else 0)


def deployment_timeline(deployment: Deployment, limit: int = PAGE_TRANSITIONS) -> tuple[list[DeploymentTransition], int]:
    """The page's history: the newest transitions first, and how many there are. One query."""
    return _newest_with_total(deployment.transitions.all(), limit)


def deployment_evaluation_page(deployment: Deployment, limit: int = PAGE_EVALUATIONS) -> tuple[list[GateEvaluation], int]:
    """The page's gate evaluations: the newest first, and how many there are. One query."""
    return _newest_with_total(deployment.evaluations.all(), limit)


def latest_evaluations(deployment_ids: list[int]) -> dict[int, dict[str, GateEvaluation]]:
    """The latest evaluation of each gate of each deployment: {deployment id: {gate: evaluation}}.
    One query (the newest id per deployment and gate, as a subquery), however many deployments."""
    if not deployment_ids:
        return {}
    newest = (GateEvaluation.objects.filter(deployment_id__in=deployment_ids)
              .values("deployment_id", "gate").annotate(newest=Max("id")).values("newest"))
    found: dict[int, dict[str, GateEvaluation]] = {pk: {} for pk in deployment_ids}
    # deployment_id again outside: the planner then reads only those deployments' rows by index
    # (and no ordering: the model's default one joins the deployments to sort by theirs)
    for e in GateEvaluation.objects.filter(deployment_id__in=deployment_ids, id__in=newest).order_by():
        found[e.deployment_id][e.gate] = e
    return found


def deployment_latest_evaluations(deployment: Deployment) -> dict[str, GateEvaluation]:
    """Each gate's latest evaluation, by gate name. One query."""
    return latest_evaluations([deployment.pk])[deployment.pk]


def deployment_green_targets(deployment: Deployment) -> list[PlacementTarget]:
    """Green's servers and their load state: the targets of green's placement (a same-servers
    green before it has one: the active placements that load its version). One query."""
    targets = PlacementTarget.objects.select_related("placement").order_by("server_name", "id")
    if deployment.green_placement_id is not None:
        return list(targets.filter(placement_id=deployment.green_placement_id))
    if deployment.placement_mode != PlacementMode.SAME_SERVERS:
        return []
    found = targets.filter(model_id=deployment.model_id).exclude(state=TargetState.REMOVED)
    green = deployment.green_version.version
    if not connection.features.supports_json_field_contains:  # SQLite (the demo): filter in Python
        return [t for t in found if green in t.placement.versions]
    return list(found.filter(placement__versions__contains=[green]))


def rollback_failed_visible(user, limit: int = BANNER_LIMIT) -> tuple[list[dict], int]:
    """The deployments in rollback_failed of the user's teams (every team for a platform admin),
    newest first, and how many there are, for the banner on every page. One query; none for an
    anonymous user."""
    if not (user and user.is_authenticated):
        return [], 0
    found = Deployment.objects.filter(state=State.ROLLBACK_FAILED)
    if not is_platform_admin(user):
        found = found.filter(team__memberships__user=user)
    rows = list(found.annotate(total=Window(Count("id"))).order_by("-id").values(
        "pk", "team__slug", "endpoint__name", "blue_version__version", "green_version__version", "status_text",
        "state_changed_at", "total")[:limit])
    return rows, (rows[0]["total"] if rows else 0)


MARKED = {"shifting", "paused", "promoting", "rolling_back", "rolled_back", "aborted", "failed", "rollback_failed"}


def deployment_markers(*, start: float, end: float, endpoint_id: int | None = None, model_id: int | None = None,
                       limit: int = 200) -> list[dict]:
    """Chart markers for the traffic shifts, pauses, promotions and rollbacks of the deployments
    of an endpoint (or a model) between two unix times: [{"t": seconds, "text": ...}]. One query."""
    from datetime import datetime, timezone

    found = DeploymentTransition.objects.filter(
        to_state__in=MARKED, at__gte=datetime.fromtimestamp(start, timezone.utc),
        at__lte=datetime.fromtimestamp(end, timezone.utc))
    if endpoint_id is not None:
        found = found.filter(deployment__endpoint_id=endpoint_id)
    elif model_id is not None:
        found = found.filter(deployment__model_id=model_id)
    else:
        return []
    markers = []
    for pk, state, at, green, detail in found.order_by("at", "id").values_list(
            "deployment_id", "to_state", "at", "deployment__green_version__version", "detail")[:limit]:
        if state == "shifting":
            text = f"#{pk}: {detail.get('traffic_percent', '?')}% to v{green}"
        else:
            text = f"#{pk}: {state.replace('_', ' ')}"
        markers.append({"t": int(at.timestamp()), "text": text})
    return markers
