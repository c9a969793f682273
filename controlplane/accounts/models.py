from django.conf import settings
from django.db import models

from controlplane.common.validators import validate_dns_name


class Team(models.Model):
    """Owns models, versions and deployments. Servers and pools are shared by the platform."""

    slug = models.CharField(max_length=63, unique=True, validators=[validate_dns_name])
    display_name = models.CharField(max_length=200, blank=True)
    service_user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="service_team",
        help_text="The account that team-owned API tokens act as (created with the first one).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class Role(models.TextChoices):
    VIEWER = "viewer"
    DEPLOYER = "deployer"
    ADMIN = "admin"


ROLE_RANK = {Role.VIEWER: 1, Role.DEPLOYER: 2, Role.ADMIN: 3}


class Scope(models.TextChoices):
    """What a token may do. On the REST API each scope includes the ones below it: admin > deploy >
    read. infer is the data plane's alone (calling endpoints through the gateway): it is outside
    that ranking, so an infer-only token cannot use the REST API and no REST scope implies infer."""

    READ = "read"
    INFER = "infer"
    DEPLOY = "deploy"
    ADMIN = "admin"


SCOPE_RANK = {Scope.READ: 1, Scope.DEPLOY: 2, Scope.ADMIN: 3}  # REST scopes only: infer ranks 0
SCOPE_FOR_ROLE = {Role.VIEWER: Scope.READ, Role.DEPLOYER: Scope.DEPLOY, Role.ADMIN: Scope.ADMIN}


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="membership_unique_user_team")]

    def __str__(self):
        return f"{self.user} in {self.team} as {self.role}"


class ApiToken(models.Model):
    """A bearer token. Only a SHA-256 of the secret is stored; the prefix identifies it.

    A personal token acts as its user. A team token (``team`` set) acts as the team's
    service account, so CI keeps working when the person who made it leaves. A service account
    has no personal tokens. ``issued_by`` is the token a token was issued through, if any;
    revoking a token revokes everything issued through it.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    issued_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="issued",
        help_text="The token this one was issued through, if it was issued through the API with a token.",
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.prefix})"

    @property
    def max_scope_rank(self) -> int:
        return max((SCOPE_RANK.get(s, 0) for s in self.scopes), default=0)

    def state(self, now) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        return "active"
