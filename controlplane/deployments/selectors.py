"""Reads of deployments, scoped to the caller's teams (another team's deployment is a 404)."""
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from controlplane.accounts.selectors import visible_teams
from controlplane.deployments.models import Deployment, DeploymentTransition, GateEvaluation

RECENT_EVALUATIONS = 100


def deployments_visible(user) -> QuerySet[Deployment]:
    return (
        Deployment.objects.filter(team__in=visible_teams(user))
        .select_related("team", "endpoint__team", "model", "blue_version", "green_version", "created_by")
        .order_by("-id")
    )


def deployment_get(user, pk) -> Deployment:
    return get_object_or_404(deployments_visible(user), pk=pk)


def deployment_history(deployment: Deployment) -> list[DeploymentTransition]:
    return list(deployment.transitions.order_by("id"))


def deployment_evaluations(deployment: Deployment, limit: int = RECENT_EVALUATIONS) -> list[GateEvaluation]:
    """The latest evaluations, oldest first."""
    return list(reversed(deployment.evaluations.order_by("-id")[:limit]))


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
