"""The one place that decides who may see and change a team's objects.

Objects of a team the caller does not belong to are reported as missing (404),
so that their existence does not leak. Platform admins (``is_staff``) see every team.
"""
from django.core.exceptions import PermissionDenied
from django.http import Http404

from controlplane.accounts.models import ROLE_RANK, Team
from controlplane.accounts.selectors import is_platform_admin, role_in


def require_role(user, team: Team, role: str) -> None:
    """Raise 404 if the user is not in the team, 403 if their role is below ``role``."""
    current = role_in(user, team)
    if current is None:
        raise Http404("No such object.")
    if ROLE_RANK[current] < ROLE_RANK[role]:
        raise PermissionDenied(f"This needs the {role} role in team {team.slug}; you are {current}.")


def require_platform_admin(user) -> None:
    if not is_platform_admin(user):
        raise PermissionDenied("Only platform admins may do this.")


def authorize(actor, team: Team, role: str) -> None:
    """Service-level check. System actors (workers, schedules) act for the platform."""
    if actor.user is None:
        if actor.source in ("worker", "schedule", "system"):
            return
        raise PermissionDenied("Authentication required.")
    require_role(actor.user, team, role)


def authorize_platform_admin(actor) -> None:
    if actor.user is None and actor.source in ("worker", "schedule", "system"):
        return
    require_platform_admin(actor.user)
