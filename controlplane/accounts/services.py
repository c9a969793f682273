from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.accounts import tokens
from controlplane.accounts.access import authorize, authorize_platform_admin, require_scope
from controlplane.accounts.models import ROLE_RANK, SCOPE_RANK, ApiToken, Membership, Role, Scope, Team
from controlplane.accounts.selectors import is_platform_admin, role_in
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record, create_audited, snapshot
from controlplane.common.errors import Conflict
from controlplane.endpoints.publication import request_publish

TOKEN_FIELDS = ["name", "prefix", "scopes", "expires_at", "team"]
MAX_TOKEN_LIFETIME = timedelta(days=366)


def team_create(*, actor: Actor, slug: str, display_name: str = "") -> Team:
    authorize_platform_admin(actor)
    team = Team(slug=slug, display_name=display_name)
    team.full_clean(validate_unique=False)
    duplicate = Conflict("slug", f"A team named {slug} already exists.")
    return create_audited(team, actor=actor, action="team.create", fields=["slug", "display_name"], duplicate=duplicate)


def membership_set(*, actor: Actor, team: Team, user, role: str) -> Membership:
    """Add a member or change a member's role. Team admins only; the last admin stays an admin."""
    authorize(actor, team, Role.ADMIN)
    if role not in Role.values:
        raise ValidationError({"role": f"Use one of {', '.join(Role.values)}."})
    if _is_service_user(user):
        raise ValidationError({"username": "Service accounts are managed through team tokens."})
    with transaction.atomic():
        memberships = list(Membership.objects.select_for_update().filter(team=team))
        membership = next((m for m in memberships if m.user_id == user.pk), None)
        before = {"user": user.get_username(), "role": membership.role} if membership else None
        if membership and membership.role == Role.ADMIN and role != Role.ADMIN:
            _keep_an_admin(team, memberships, leaving=membership)
        if membership is None:
            membership = Membership(team=team, user=user)
        membership.role = role
        membership.save()
        audit_record(
            actor=actor,
            action="membership.set",
            obj=membership,
            team=team,
            before=before,
            after={"user": user.get_username(), "role": role},
        )
        request_publish()  # the role caps a personal token's data-plane scopes; one team or several decides its listing
    return membership


def membership_remove(*, actor: Actor, team: Team, user) -> None:
    authorize(actor, team, Role.ADMIN)
    with transaction.atomic():
        memberships = list(Membership.objects.select_for_update().filter(team=team))
        membership = next((m for m in memberships if m.user_id == user.pk), None)
        if membership is None:
            raise ValidationError({"username": f"{user.get_username()} is not a member of {team.slug}."})
        if membership.role == Role.ADMIN:
            _keep_an_admin(team, memberships, leaving=membership)
        audit_record(
            actor=actor,
            action="membership.remove",
            obj=membership,
            team=team,
            before={"user": user.get_username(), "role": membership.role},
        )
        membership.delete()
        request_publish()  # a personal token acts for its user's teams


def _keep_an_admin(team: Team, memberships: list[Membership], *, leaving: Membership) -> None:
    human_admins = [m for m in memberships if m.role == Role.ADMIN and m.pk != leaving.pk and not _is_service_user(m.user)]
    if not human_admins:
        raise Conflict("role", f"{leaving.user.get_username()} is the last admin of {team.slug}; make someone else admin first.")


def _is_service_user(user) -> bool:
    return Team.objects.filter(service_user=user).exists()


def _service_user(team: Team, actor: Actor):
    """The account a team's tokens act as; an admin of its team with no usable password."""
    if team.service_user_id:
        return team.service_user
    User = get_user_model()
    user = User.objects.create_user(username=f"svc.{team.slug}", password=None)
    Membership.objects.create(user=user, team=team, role=Role.ADMIN)
    Team.objects.filter(pk=team.pk).update(service_user=user)
    team.service_user = user
    audit_record(actor=actor, action="team.service_account", obj=team, team=team, after={"service_user": user.get_username()})
    return user


def _highest_role(user) -> int:
    if is_platform_admin(user):
        return ROLE_RANK[Role.ADMIN]
    roles = Membership.objects.filter(user=user).values_list("role", flat=True)
    return max((ROLE_RANK[r] for r in roles), default=0)


def token_create(
    *,
    actor: Actor,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    user=None,
    team: Team | None = None,
) -> tuple[ApiToken, str]:
    """Issue a personal token (``user``) or a team token (``team``). Returns the row and the secret,
    which is never stored and never shown again. Scopes never exceed the issuer's role.

    A service account has no personal tokens: a token asked for as one (a team token issuing "its
    own" token) is a team token of the same team, so the team's admins see it and can revoke it.
    """
    if (user is None) == (team is None):
        raise ValidationError({"team": "A token belongs to a user or to a team."})
    if user is not None:
        team = Team.objects.filter(service_user=user).first()
        user = None if team is not None else user
    errors = {}
    if not name or len(name) > 100:
        errors["name"] = "Give the token a name of 1-100 characters, such as github-actions."
    if not scopes or any(s not in Scope.values for s in scopes):
        errors["scopes"] = f"Give one or more of {', '.join(Scope.values)}."
    now = timezone.now()
    if expires_at is None or expires_at <= now or expires_at > now + MAX_TOKEN_LIFETIME:
        errors["expires_at"] = f"Tokens expire between now and {MAX_TOKEN_LIFETIME.days} days from now."
    if errors:
        raise ValidationError(errors)
    wanted = max(SCOPE_RANK.get(s, 0) for s in scopes)  # infer ranks 0: any member may hold it
    if team is not None:
        authorize(actor, team, Role.ADMIN)
        ceiling = ROLE_RANK[role_in(actor.user, team)] if actor.user else ROLE_RANK[Role.ADMIN]
    else:
        if actor.user is not None and actor.user != user:
            authorize_platform_admin(actor)
        require_scope(actor, Scope.ADMIN)  # else a read-only token could mint itself a stronger one
        ceiling = _highest_role(user)
    if wanted > ceiling:
        raise PermissionDenied(f"A token cannot have more rights than its owner's role; {', '.join(scopes)} is too much.")
    secret, prefix, secret_hash = tokens.generate()
    with transaction.atomic():
        owner = _service_user(team, actor) if team is not None else user
        token = ApiToken.objects.create(
            user=owner,
            team=team,
            created_by=actor.user,
            issued_by_id=actor.token_id,
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            scopes=sorted(set(scopes), key=lambda s: (SCOPE_RANK.get(s, 0), s)),
            expires_at=expires_at,
        )
        audit_record(actor=actor, action="token.create", obj=token, team=team, after=snapshot(token, TOKEN_FIELDS))
        request_publish()  # the gateway accepts data-plane tokens from the table
    return token, secret


def token_revoke(*, actor: Actor, token: ApiToken, reason: str = "") -> ApiToken:
    """Revoke a token and every token issued through it, at any depth. Its owner, its team's admins
    and platform admins may. Revoking twice is a no-op.

    A token issued through a token has the same owner (the same team, or the same person), so
    whoever may revoke the first may revoke the rest. Otherwise a leaked token could mint a
    successor that outlives its revocation.
    """
    if token.team_id is not None:
        authorize(actor, token.team, Role.ADMIN)
    elif actor.user != token.user:
        authorize_platform_admin(actor)
    else:
        require_scope(actor, Scope.ADMIN)  # managing tokens through a token is an admin act
    with transaction.atomic():
        _revoke_one(actor, token, reason)
        issuers = [token.pk]
        while issuers:
            issued = list(ApiToken.objects.select_related("team").filter(issued_by_id__in=issuers))
            for child in issued:
                _revoke_one(actor, child, f"{token.prefix} was revoked, and this token was issued through it")
            issuers = [child.pk for child in issued]
    return token


def _revoke_one(actor: Actor, token: ApiToken, reason: str) -> None:
    changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    if changed:
        audit_record(actor=actor, action="token.revoke", obj=token, team=token.team, before={"revoked_at": None},
                     after={"revoked_at": token.revoked_at.isoformat()}, reason=reason)
        request_publish()  # a revoked token leaves the table


def user_create(*, actor: Actor, username: str, password: str, is_staff: bool = False, is_superuser: bool = False):
    authorize_platform_admin(actor)
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password, is_staff=is_staff, is_superuser=is_superuser)
        user_created_record(actor=actor, user=user)
    return user


def user_created_record(*, actor: Actor, user) -> None:
    """The audit event of a new account, for paths that create it themselves (createsuperuser)."""
    after = {"username": user.get_username(), "is_staff": user.is_staff, "is_superuser": user.is_superuser}
    audit_record(actor=actor, action="user.create", obj=user, after=after)
