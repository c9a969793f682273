from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.audit.context import Actor
from controlplane.common.api import INT64_MAX, StrictCharField, StrictIntegerField, StrictSerializer, validated
from controlplane.placements import selectors, services
from controlplane.placements.filters import PlacementFilterSet
from controlplane.placements.models import Placement, PlacementTarget
from controlplane.registry.selectors import model_get


class PlacementTargetSerializer(serializers.ModelSerializer):
    server = serializers.CharField(source="server_name")

    class Meta:
        model = PlacementTarget
        fields = [
            "id", "server", "server_id", "state", "error", "drift", "drift_detail", "gpus", "load_seconds",
            "loaded_at", "last_checked_at", "state_changed_at",
        ]


class PlacementSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.__str__", read_only=True)
    triton_name = serializers.CharField(source="model.triton_name", read_only=True)
    config_revision = serializers.IntegerField(read_only=True, allow_null=True)
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True, allow_null=True)
    is_active = serializers.BooleanField(read_only=True)
    states = serializers.SerializerMethodField(help_text="Targets per state, such as {\"ready\": 2}.")
    targets = serializers.SerializerMethodField()

    class Meta:
        model = Placement
        fields = [
            "id", "model", "model_name", "triton_name", "versions", "config_revision", "rendered_config",
            "is_active", "states", "targets", "created_by", "created_at", "removed_at",
        ]

    def _targets(self, placement):
        targets = placement.targets.all()
        return [t for t in targets if t.is_active] if placement.is_active else list(targets)

    def get_states(self, placement) -> dict:
        return selectors.target_summary(self._targets(placement))

    @extend_schema(responses=PlacementTargetSerializer(many=True))
    def get_targets(self, placement) -> list:
        return PlacementTargetSerializer(self._targets(placement), many=True).data


class PlacementCreateSerializer(StrictSerializer):
    model = StrictIntegerField(min_value=1, max_value=INT64_MAX, help_text="The model's id.")
    versions = serializers.ListField(child=StrictIntegerField(min_value=1), help_text="Version numbers, e.g. [3].")
    servers = serializers.ListField(child=StrictCharField(max_length=63), help_text="Server names.")
    config_revision = StrictIntegerField(
        required=False, allow_null=True, min_value=1,
        help_text="A serving config revision of the model; omitted: the current one (pinned at creation).",
    )


class RetrySerializer(serializers.Serializer):
    retried = serializers.ListField(child=serializers.CharField(), help_text="Servers sent back to pending.")
    placement = PlacementSerializer()


class PlacementViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Placements: a model's versions and config revision loaded on servers.

    Creating, retrying and removing return at once; Celery workers talk to Triton. Poll the
    placement to follow each target's state.
    """

    serializer_class = PlacementSerializer
    filterset_class = PlacementFilterSet
    ordering_fields = ["created_at", "id"]

    def get_queryset(self):
        return selectors.placements_visible(self.request.user)

    def _fresh(self, placement: Placement) -> dict:
        return PlacementSerializer(selectors.placement_get(self.request.user, placement.pk)).data

    @extend_schema(request=PlacementCreateSerializer, responses={201: PlacementSerializer, 200: PlacementSerializer})
    def create(self, request):
        """Place versions on servers. The same request again returns the existing placement (200)."""
        data = validated(PlacementCreateSerializer, request)
        model = model_get(request.user, data["model"])
        placement, created = services.placement_create(
            actor=Actor.from_request(request), model=model, versions=data["versions"],
            servers=selectors.servers_named(data["servers"]),
            config=selectors.config_of_model(model, data.get("config_revision")),
        )
        return Response(self._fresh(placement), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=None, responses={202: PlacementSerializer})
    def destroy(self, request, pk=None):
        """Remove: unload from every server and release the GPUs. Removing twice is harmless."""
        placement = services.placement_remove(actor=Actor.from_request(request), placement=self.get_object())
        return Response(self._fresh(placement), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: RetrySerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Load the failed and stuck targets again."""
        placement = self.get_object()
        moved = services.placement_retry(actor=Actor.from_request(request), placement=placement)
        body = {"retried": [t.server_name for t in moved], "placement": self._fresh(placement)}
        return Response(body, status=status.HTTP_202_ACCEPTED)
