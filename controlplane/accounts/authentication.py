from django.utils import timezone
from rest_framework import authentication, exceptions

from controlplane.accounts import tokens
from controlplane.accounts.models import ApiToken, Team


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer sy_...``. Says why a token is refused."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        prefix = tokens.split_prefix(token)
        api_token = ApiToken.objects.select_related("user").filter(prefix=prefix).first() if prefix else None
        if api_token is None or not tokens.matches(token, api_token.secret_hash):
            raise exceptions.AuthenticationFailed("Invalid API token.")
        now = timezone.now()
        if api_token.revoked_at:
            raise exceptions.AuthenticationFailed(f"API token {api_token.prefix} was revoked.")
        if api_token.expires_at and api_token.expires_at <= now:
            raise exceptions.AuthenticationFailed(f"API token {api_token.prefix} expired at {api_token.expires_at:%Y-%m-%d %H:%M} UTC.")
        if not api_token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is inactive.")
        if api_token.team_id is None and Team.objects.filter(service_user_id=api_token.user_id).exists():
            # Made before service accounts lost personal tokens; the team could neither see nor revoke it.
            raise exceptions.AuthenticationFailed(
                f"API token {api_token.prefix} is a personal token of a service account, which is no longer "
                "accepted; a team admin can issue a team token instead."
            )
        if api_token.max_scope_rank == 0:
            # Authenticated, but its scopes are the data plane's only (infer): a 403, not a 401.
            raise exceptions.PermissionDenied(
                f"API token {api_token.prefix} has only the {', '.join(api_token.scopes) or 'no'} scope, which is for "
                "the inference gateway; the REST API needs read, deploy or admin."
            )
        ip = request.META.get("REMOTE_ADDR")
        ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now, last_used_ip=ip)
        return api_token.user, api_token

    def authenticate_header(self, request):
        return 'Bearer realm="switchyard"'
