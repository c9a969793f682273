"""Webhook reads. Webhooks are their team admins' alone: a webhook URL is often a credential
itself (a Slack incoming-webhook URL is), so other members and other teams never see them."""
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from controlplane.accounts.models import Role, Team
from controlplane.accounts.selectors import teams_with_role
from controlplane.endpoints.models import Endpoint
from controlplane.notifications.models import Webhook, WebhookDelivery


def webhooks_manageable(user) -> QuerySet[Webhook]:
    """Webhooks of the teams where the user is an admin (every team for platform admins)."""
    return (Webhook.objects.filter(team__in=teams_with_role(user, Role.ADMIN))
            .select_related("team", "endpoint__team", "created_by").order_by("team__slug", "id"))


def webhook_get(user, pk) -> Webhook:
    """404 for webhooks the user may not manage, exactly as for missing ones."""
    return get_object_or_404(webhooks_manageable(user), pk=pk)


def deliveries_of(webhook: Webhook) -> QuerySet[WebhookDelivery]:
    """The webhook's delivery log, newest first."""
    return WebhookDelivery.objects.filter(webhook=webhook).order_by("-created_at", "-id")


def endpoint_for_webhook(team: Team, pk: int, field: str = "endpoint") -> Endpoint:
    """An endpoint of ``team``. Another team's endpoint is as missing as an unknown id."""
    endpoint = Endpoint.objects.filter(team=team, pk=pk).select_related("team").first()
    if endpoint is None:
        raise ValidationError({field: f"No endpoint with id {pk} in team {team.slug}."})
    return endpoint
