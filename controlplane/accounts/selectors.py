from django.db.models import QuerySet

from controlplane.accounts.models import Membership, Role, Team


def is_platform_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_staff)


def visible_teams(user) -> QuerySet[Team]:
    """The teams whose objects the user may see. Platform admins see every team."""
    if is_platform_admin(user):
        return Team.objects.all()
    if not (user and user.is_authenticated):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user)


def role_in(user, team: Team) -> str | None:
    if is_platform_admin(user):
        return Role.ADMIN
    membership = Membership.objects.filter(user=user, team=team).only("role").first()
    return membership.role if membership else None
