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
