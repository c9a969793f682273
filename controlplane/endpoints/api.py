from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.response import Response

from controlplane.accounts.selectors import team_for_write
from controlplane.audit.context import Actor
from controlplane.common.api import (
    INT64_MAX,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictNumberField,
    StrictSerializer,
    validated,
)
from controlplane.common.parsers import JSONParser
from controlplane.endpoints import selectors, services
from controlplane.endpoints.filters import EndpointFilterSet
from controlplane.endpoints.models import MAX_WEIGHT, Access, Endpoint, EndpointKind


# Input


class VariantInSerializer(StrictSerializer):
    """One variant of a pinned endpoint."""

    name = StrictCharField(max_length=63, help_text="Unique in the endpoint, such as stable or canary.")
    version = StrictIntegerField(min_value=1, help_text="A ready version number of the endpoint's model.")
    weight = StrictIntegerField(min_value=0, max_value=MAX_WEIGHT, help_text="Relative traffic weight.")


class StickyInSerializer(StrictSerializer):
    """The sticky key: a header or a cookie, not both."""

    header = StrictCharField(required=False, max_length=64, help_text="A request header to hash, such as X-User-Id.")
    cookie = StrictCharField(required=False, max_length=64, help_text="Or a cookie to hash.")


class ShadowInSerializer(StrictSerializer):
    """A version that receives a mirrored copy of some requests; its answers are only compared."""

    version = StrictIntegerField(min_value=1, help_text="A ready version of the endpoint's model that does not serve it.")
    percent = StrictNumberField(min_value=0, max_value=100, help_text="Share of requests mirrored, 0-100.")
    rtol = StrictNumberField(required=False, min_value=0, default=1e-5, help_text="Relative tolerance of the comparison.")
    atol = StrictNumberField(required=False, min_value=0, default=1e-6, help_text="Absolute tolerance of the comparison.")


class EndpointUpdateSerializer(StrictSerializer):
    """The fields to change; unknown fields are refused. The team and the model are fixed."""

    # Every field optional without DRF's partial mode, which would also let a nested variant or
    # shadow object leave out its own required fields.
    name = StrictCharField(required=False, max_length=63, help_text="A DNS label, unique in the team.")
    kind = StrictChoiceField(required=False, choices=EndpointKind.choices)
    label = StrictCharField(required=False, allow_blank=True, max_length=31, help_text="For kind label: the label it follows.")
    variants = VariantInSerializer(many=True, required=False, max_length=services.MAX_VARIANTS,
                                   help_text="For kind pinned: 1 to 16 variants. Replaces the list.")
    access = StrictChoiceField(choices=Access.choices, required=False)
    sticky = StickyInSerializer(required=False, allow_null=True, help_text='{"header": name}, {"cookie": name} or null.')
    shadow = ShadowInSerializer(required=False, allow_null=True, help_text="Mirror a share of requests to a version, or null.")
    description = StrictCharField(required=False, allow_blank=True, max_length=services.MAX_DESCRIPTION)


class EndpointCreateSerializer(EndpointUpdateSerializer):
    """A new endpoint of a team, serving one of the team's models. Unknown fields are refused."""

    team = StrictCharField(max_length=63, help_text="The owning team's slug.")
    model = StrictIntegerField(min_value=1, max_value=INT64_MAX, help_text="The id of a model of that team.")
    name = StrictCharField(max_length=63, help_text="A DNS label, unique in the team: clients call <team>.<name>.")
    kind = StrictChoiceField(choices=EndpointKind.choices)


def _keyed_like_the_services(detail):
    """DRF keys a list item's errors by index ({0: {...}}) and a nested object's own errors as
    non_field_errors; make them a list and the field itself, so a 400 names ``variants[0].weight``
    and ``sticky`` as the services do."""
    if isinstance(detail, dict):
        if set(detail) == {"non_field_errors"}:
            return detail["non_field_errors"]
        if detail and all(isinstance(k, int) for k in detail):
            items = [{} for _ in range(max(detail) + 1)]
            for index, value in detail.items():
                items[index] = _keyed_like_the_services(value)
            return items
        return {k: _keyed_like_the_services(v) for k, v in detail.items()}
    return detail


def _validated(serializer_class, request) -> dict:
    try:
        return validated(serializer_class, request)
    except exceptions.ValidationError as exc:
        raise exceptions.ValidationError(_keyed_like_the_services(exc.detail)) from None


def _service_args(data: dict) -> dict:
    """The validated body in the services' terms."""
    args = {k: v for k, v in data.items() if k not in ("sticky", "shadow", "variants", "team", "model")}
    if "variants" in data:
        args["variants"] = [services.VariantSpec(**v) for v in data["variants"]]
    if "sticky" in data:
        sticky = data["sticky"] or {}
        args["sticky_header"], args["sticky_cookie"] = sticky.get("header", ""), sticky.get("cookie", "")
    if "shadow" in data:
        args["shadow"] = services.ShadowSpec(**data["shadow"]) if data["shadow"] is not None else None
    return args


# Output


class EndpointVariantSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField(source="version.version")
    weight = serializers.IntegerField()


class EndpointStickySerializer(serializers.Serializer):
    header = serializers.CharField(required=False)
    cookie = serializers.CharField(required=False)


class EndpointShadowSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    percent = serializers.FloatField()
    rtol = serializers.FloatField()
    atol = serializers.FloatField()


class EndpointVariantStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField(allow_null=True, help_text="null: the label is not set.")
    weight = serializers.IntegerField()
    servers = serializers.ListField(child=serializers.CharField(), help_text="Servers where this version is READY.")


class EndpointStatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=[selectors.SERVING, selectors.NO_READY_SERVER])
    variants = EndpointVariantStatusSerializer(many=True, help_text="What serves: a label-bound endpoint's label resolved now.")
    shadow = EndpointVariantStatusSerializer(allow_null=True)


class EndpointSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug")
    public_name = serializers.CharField(help_text="<team>.<name>: what tritonclient passes as model_name.")
    model_name = serializers.CharField(source="model.name")
    variants = EndpointVariantSerializer(many=True, help_text="A pinned endpoint's variants; empty for a label-bound one.")
    sticky = serializers.SerializerMethodField()
    shadow = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta:
        model = Endpoint
        fields = [
            "id", "team", "name", "public_name", "model", "model_name", "kind", "label", "access", "sticky",
            "variants", "shadow", "description", "status", "created_by", "created_at", "updated_at",
        ]

    @extend_schema_field(EndpointStickySerializer(allow_null=True))
    def get_sticky(self, endpoint) -> dict | None:
        return services.sticky_dict(endpoint.sticky_header, endpoint.sticky_cookie)

    @extend_schema_field(EndpointShadowSerializer(allow_null=True))
    def get_shadow(self, endpoint) -> dict | None:
        if not endpoint.shadow_version_id:
            return None
        return {"version": endpoint.shadow_version.version, "percent": endpoint.shadow_percent,
                "rtol": endpoint.shadow_rtol, "atol": endpoint.shadow_atol}

    @extend_schema_field(EndpointStatusSerializer)
    def get_status(self, endpoint) -> dict:
        statuses = self.context.get("statuses")
        found = statuses.get(endpoint.pk) if statuses is not None else None
        return EndpointStatusSerializer(found or selectors.endpoint_status(endpoint)).data


class EndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Endpoints: the stable names clients call through the gateway, as <team>.<name>.

    A label-bound endpoint serves the version its label points at; a pinned one lists its variants
    with traffic weights. Deployers and above of the team change them; every change is audited.
    """

    serializer_class = EndpointSerializer
    filterset_class = EndpointFilterSet
    ordering_fields = ["name", "created_at"]
    parser_classes = [JSONParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.endpoints_visible(self.request.user)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "statuses": getattr(self, "_statuses", None)}

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        self._statuses = selectors.endpoint_statuses(page if page is not None else queryset)
        return page

    def _fresh(self, pk) -> dict:
        return EndpointSerializer(selectors.endpoint_get(self.request.user, pk)).data

    @extend_schema(request=EndpointCreateSerializer, responses={201: EndpointSerializer})
    def create(self, request):
        data = _validated(EndpointCreateSerializer, request)
        team = team_for_write(request.user, data["team"])
        model = selectors.model_for_endpoint(team, data["model"])
        endpoint = services.endpoint_create(actor=Actor.from_request(request), team=team, model=model, **_service_args(data))
        return Response(self._fresh(endpoint.pk), status=status.HTTP_201_CREATED)

    @extend_schema(request=EndpointUpdateSerializer, responses=EndpointSerializer)
    def partial_update(self, request, pk=None):
        """Change some fields; `variants` replaces the list. Nothing changed writes nothing."""
        endpoint = self.get_object()
        data = _validated(EndpointUpdateSerializer, request)
        services.endpoint_update(actor=Actor.from_request(request), endpoint=endpoint, **_service_args(data))
        return Response(self._fresh(endpoint.pk))

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request, pk=None):
        services.endpoint_delete(actor=Actor.from_request(request), endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
