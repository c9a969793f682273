import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.accounts.access import require_scope
from controlplane.accounts.models import Scope
from controlplane.accounts.selectors import team_for_write
from controlplane.audit.context import Actor
from controlplane.common.api import (
    INT64_MAX,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictSerializer,
    validated,
)
from controlplane.common.filters import IdFilter
from controlplane.common.parsers import JSONParser
from controlplane.notifications import selectors, services
from controlplane.notifications.models import (
    DELIVERY_EVENTS,
    DeliveryStatus,
    Event,
    Webhook,
    WebhookDelivery,
)
from controlplane.notifications.validation import MAX_URL

# Input


class WebhookUpdateSerializer(StrictSerializer):
    """The fields to change; unknown fields are refused. The team and the secret are fixed."""

    name = StrictCharField(required=False, allow_blank=True, max_length=services.MAX_NAME,
                           help_text="Such as #ml-deploys, to tell webhooks apart.")
    url = StrictCharField(required=False, max_length=MAX_URL, trim_whitespace=False,
                          help_text="The receiver: any http(s) URL. Redirects are not followed.")
    endpoint = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=INT64_MAX,
                                  help_text="Only this endpoint's deployments (an endpoint id of the team); null for all.")
    events = serializers.ListField(child=StrictChoiceField(choices=Event.choices), required=False, allow_empty=False,
                                   max_length=len(Event.values), help_text="The events to send; all by default.")
    active = StrictBooleanField(required=False, help_text="false stops new and pending deliveries.")


class WebhookCreateSerializer(WebhookUpdateSerializer):
    """A new webhook of a team (team admins). Its secret is generated and shown once."""

    team = StrictCharField(max_length=63, help_text="The owning team's slug.")
    url = StrictCharField(max_length=MAX_URL, trim_whitespace=False,
                          help_text="The receiver: any http(s) URL. Redirects are not followed.")


# Output


class WebhookSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug")
    endpoint = serializers.IntegerField(source="endpoint_id", allow_null=True, help_text="null: every endpoint of the team.")
    endpoint_name = serializers.SerializerMethodField(help_text="The endpoint's public name, <team>.<name>.")
    events = serializers.ListField(child=serializers.ChoiceField(choices=Event.choices))
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta:
        model = Webhook
        fields = ["id", "team", "endpoint", "endpoint_name", "name", "url", "events", "active", "created_by",
                  "created_at", "updated_at"]

    def get_endpoint_name(self, webhook) -> str | None:
        return webhook.endpoint.public_name if webhook.endpoint_id else None


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(help_text="Shown once: the key of the X-Switchyard-Signature HMAC. Store it now.")

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class DeliveryAttemptSerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True, help_text="null: no HTTP answer (refused, timed out...).")
    error = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField()


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event = serializers.ChoiceField(choices=DELIVERY_EVENTS)
    log = DeliveryAttemptSerializer(many=True, help_text="Every attempt, oldest first.")
    payload = serializers.JSONField(help_text="The JSON body sent.")

    class Meta:
        model = WebhookDelivery
        fields = ["id", "webhook", "event", "status", "attempts", "last_status_code", "last_error", "next_attempt_at",
                  "created_at", "delivered_at", "log", "payload"]


class WebhookFilterSet(django_filters.FilterSet):
    team = django_filters.CharFilter(field_name="team__slug", label="Team")
    endpoint = IdFilter(field_name="endpoint_id", label="Endpoint id")
    active = django_filters.BooleanFilter()

    class Meta:
        model = Webhook
        fields = ["team", "endpoint", "active"]


class DeliveryFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event = django_filters.ChoiceFilter(choices=[(e, e) for e in DELIVERY_EVENTS])

    class Meta:
        model = WebhookDelivery
        fields = ["status", "event"]


class _AdminScopeMixin:
    """Webhooks are read and written by team admins only, so a token needs the admin scope even to
    read them (their URLs can be credentials)."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        require_scope(Actor.from_request(request), Scope.ADMIN)


def _items_as_lists(detail):
    """DRF keys a list item's errors by index ({0: [...]}); make them a list, so a 400 names
    ``events[0]`` as the other apps' errors do."""
    if isinstance(detail, dict):
        if detail and all(isinstance(k, int) for k in detail):
            items = [{} for _ in range(max(detail) + 1)]  # {}: no error at that index
            for index, value in detail.items():
                items[index] = _items_as_lists(value)
            return items
        return {k: _items_as_lists(v) for k, v in detail.items()}
    return detail


def _validated(serializer_class, request) -> dict:
    try:
        return validated(serializer_class, request)
    except exceptions.ValidationError as exc:
        raise exceptions.ValidationError(_items_as_lists(exc.detail)) from None


def _service_args(data: dict, team) -> dict:
    args = {k: v for k, v in data.items() if k not in ("team", "endpoint")}
    if "endpoint" in data:
        args["endpoint"] = None if data["endpoint"] is None else selectors.endpoint_for_webhook(team, data["endpoint"])
    return args


class WebhookViewSet(_AdminScopeMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Webhooks: a team's deployment notifications (started, paused, rolled_back, succeeded,
    failed) as Slack-compatible JSON, signed with the webhook's secret. Team admins only; every
    change is audited (the URL only as its origin and a fingerprint)."""

    serializer_class = WebhookSerializer
    queryset = Webhook.objects.none()  # for the schema only (typed {id}); get_queryset scopes it
    filterset_class = WebhookFilterSet
    ordering_fields = ["id", "created_at"]
    parser_classes = [JSONParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.webhooks_manageable(self.request.user)

    def _fresh(self, pk) -> dict:
        return WebhookSerializer(selectors.webhook_get(self.request.user, pk)).data

    @extend_schema(request=WebhookCreateSerializer, responses={201: WebhookCreatedSerializer})
    def create(self, request):
        """Create a webhook. The response holds its secret, the only time it is shown."""
        data = _validated(WebhookCreateSerializer, request)
        team = team_for_write(request.user, data["team"])
        webhook, secret = services.webhook_create(actor=Actor.from_request(request), team=team, **_service_args(data, team))
        body = WebhookCreatedSerializer(selectors.webhook_get(request.user, webhook.pk)).data
        return Response({**body, "secret": secret}, status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookUpdateSerializer, responses=WebhookSerializer)
    def partial_update(self, request, pk=None):
        """Change some fields. Nothing changed writes nothing."""
        webhook = self.get_object()
        data = _validated(WebhookUpdateSerializer, request)
        services.webhook_update(actor=Actor.from_request(request), webhook=webhook, **_service_args(data, webhook.team))
        return Response(self._fresh(webhook.pk))

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request, pk=None):
        """Delete the webhook and its delivery log."""
        services.webhook_delete(actor=Actor.from_request(request), webhook=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a `test` event now (active or not); follow it in the delivery log."""
        delivery = services.webhook_test(actor=Actor.from_request(request), webhook=self.get_object())
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryViewSet(_AdminScopeMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A webhook's delivery log, newest first: each notification, its status and every attempt."""

    serializer_class = WebhookDeliverySerializer
    queryset = WebhookDelivery.objects.none()  # for the schema only; get_queryset scopes it
    filterset_class = DeliveryFilterSet
    ordering_fields = ["id", "created_at"]

    def get_queryset(self):
        return selectors.deliveries_of(selectors.webhook_get(self.request.user, self.kwargs["webhook_pk"]))
