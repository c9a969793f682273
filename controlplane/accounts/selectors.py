from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from controlplane.accounts.models import ROLE_RANK, ApiToken, Membership, Role, Team


def is_platform_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_staff)


def visible_teams(user) -> QuerySet[Team]:
    """The teams whose objects the user may see. Platform admins see every team."""
    if is_platform_admin(user):
        return Team.objects.all()
    if not (user and user.is_authenticated):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user)


def visible_team_ids(user) -> list[int] | None:
    """The user's team ids, read once for a page's queries: a list plans faster than the membership
    subquery in each of them. None for a platform admin, who sees every team (and costs no query)."""
    return None if is_platform_admin(user) else list(visible_teams(user).values_list("id", flat=True))


def role_in(user, team: Team) -> str | None:
    if is_platform_admin(user):
        return Role.ADMIN
    membership = Membership.objects.filter(user=user, team=team).only("role").first()
    return membership.role if membership else None


def has_role(user, team: Team, role: str) -> bool:
    """Whether the user holds at least ``role`` in the team (what pages use to show controls)."""
    current = role_in(user, team)
    return current is not None and ROLE_RANK[current] >= ROLE_RANK[role]


def teams_with_role(user, role: str) -> QuerySet[Team]:
    """The teams where the user holds at least ``role`` (what a page offers to write into)."""
    if is_platform_admin(user):
        return Team.objects.all()
    if not (user and user.is_authenticated):
        return Team.objects.none()
    ranks = [r for r, rank in ROLE_RANK.items() if rank >= ROLE_RANK[role]]
    return Team.objects.filter(memberships__user=user, memberships__role__in=ranks)


def team_for_write(user, slug: str, field: str = "team") -> Team:
    """Resolve a team named in a request. Unknown and foreign teams get the same answer."""
    team = visible_teams(user).filter(slug=slug).first()
    if team is None:
        raise ValidationError({field: f"No team named {slug!r} among your teams."})
    return team


def user_by_username(username: str, field: str = "username"):
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ValidationError({field: f"No active user named {username!r}."})
    return user


def team_members(team: Team) -> QuerySet[Membership]:
    """People in the team. The service account behind team tokens is not a member to manage."""
    members = Membership.objects.filter(team=team).select_related("user").order_by("user__username")
    if team.service_user_id:
        members = members.exclude(user_id=team.service_user_id)
    return members


def tokens_manageable(user) -> QuerySet[ApiToken]:
    """The user's personal tokens and the tokens of teams they administer (all for platform admins)."""
    tokens = ApiToken.objects.select_related("user", "team").order_by("-created_at")
    if is_platform_admin(user):
        return tokens
    admin_teams = Membership.objects.filter(user=user, role=Role.ADMIN).values("team_id")
    return tokens.filter(Q(user=user, team__isnull=True) | Q(team_id__in=admin_teams))


TEAM_HISTORY_TYPES = ["accounts.team", "accounts.membership", "accounts.apitoken", "quotas.gpuquota"]


def team_history(team: Team):
    """The team's own changes (members, tokens, quota), newest first; its models have their own pages."""
    from controlplane.audit.models import AuditEvent

    return AuditEvent.objects.filter(team=team, object_type__in=TEAM_HISTORY_TYPES).order_by("-id")
