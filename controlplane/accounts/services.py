from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from controlplane.accounts import tokens
from controlplane.accounts.access import authorize, authorize_platform_admin
from controlplane.accounts.models import ApiToken, Membership, Role, Team
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record, snapshot
from controlplane.common.errors import Conflict

TOKEN_FIELDS = ["name", "prefix", "scopes", "expires_at"]


def team_create(*, actor: Actor, slug: str, display_name: str = "") -> Team:
    authorize_platform_admin(actor)
    team = Team(slug=slug, display_name=display_name)
    team.full_clean(validate_unique=False)
    duplicate = Conflict("slug", f"A team named {slug} already exists.")
    if Team.objects.filter(slug=slug).exists():
        raise duplicate
    try:
        with transaction.atomic():
            team.save()
            audit_record(actor=actor, action="team.create", obj=team, team=team, after=snapshot(team, ["slug", "display_name"]))
    except IntegrityError:
        raise duplicate from None
    return team


def membership_set(*, actor: Actor, team: Team, user, role: str) -> Membership:
    authorize(actor, team, Role.ADMIN)
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
        before = {"role": membership.role} if membership else None
        if membership is None:
            membership = Membership(team=team, user=user)
        membership.role = role
        membership.full_clean(validate_unique=False, validate_constraints=False)
        membership.save()
        audit_record(
            actor=actor,
            action="membership.set",
            obj=membership,
            team=team,
            before=before,
            after={"user": user.get_username(), "role": role},
        )
    return membership


def token_create(
    *, actor: Actor, user, name: str, scopes: list[str], expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Returns the token row and the secret, which is never stored and never shown again."""
    if actor.user is not None and actor.user != user:
        authorize_platform_admin(actor)
    secret, prefix, secret_hash = tokens.generate()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name, prefix=prefix, secret_hash=secret_hash, scopes=scopes, expires_at=expires_at
        )
        audit_record(actor=actor, action="token.create", obj=token, after=snapshot(token, TOKEN_FIELDS))
    return token, secret


def user_create(*, actor: Actor, username: str, password: str, is_staff: bool = False):
    authorize_platform_admin(actor)
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password, is_staff=is_staff)
        audit_record(actor=actor, action="user.create", obj=user, after={"username": username, "is_staff": is_staff})
    return user
