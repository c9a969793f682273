"""The one place that decides who may see and change a team's objects.

Objects of a team the caller does not belong to are reported as missing (404),
so that their existence does not leak. Platform admins (``is_staff``) see every team.
"""
from django.core.exceptions import PermissionDenied
from django.http import Http404

from controlplane.accounts.models import ROLE_RANK, SCOPE_FOR_ROLE, SCOPE_RANK, Scope, Team
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


def _is_system(actor) -> bool:
    return actor.user is None and actor.source in ("worker", "schedule", "system")


def require_scope(actor, scope: str) -> None:
    """A token acts within its scopes, whatever its owner's role allows."""
    if actor.token_scopes is None:
        return
    if max((SCOPE_RANK.get(s, 0) for s in actor.token_scopes), default=0) < SCOPE_RANK[scope]:
        have = ", ".join(actor.token_scopes) or "none"
        raise PermissionDenied(f"This API token's scopes ({have}) do not allow this; it needs the {scope} scope.")


def authorize(actor, team: Team, role: str) -> None:
    """The one service-level check. System actors (workers, schedules) act for the platform."""
    if _is_system(actor):
        return
    if actor.user is None:
        raise PermissionDenied("Authentication required.")
    require_role(actor.user, team, role)
    require_scope(actor, SCOPE_FOR_ROLE[role])


def authorize_platform_admin(actor) -> None:
    if _is_system(actor):
        return
    require_platform_admin(actor.user)
    require_scope(actor, Scope.ADMIN)
