from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, serializers, status, viewsets
from rest_framework.response import Response

from controlplane.accounts.selectors import team_for_write
from controlplane.audit.context import Actor
from controlplane.common.api import (
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictJSONField,
    StrictSerializer,
    validated,
)
from controlplane.common.parsers import JSONParser
from controlplane.registry import labels, selectors, services
from controlplane.registry.filters import ModelFilterSet
from controlplane.registry.models import Backend, LabelMove, Model, ModelVersion
from controlplane.registry.uploads import check_upload_length, upload_field, uploaded_contents


class ModelSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug")
    version_count = serializers.IntegerField(read_only=True)
    latest_version = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Model
        fields = [
            "id", "team", "name", "triton_name", "backend", "max_batch_size", "inputs", "outputs",
            "description", "version_count", "latest_version", "created_at",
        ]


class ModelCreateSerializer(StrictSerializer):
    team = StrictCharField(max_length=63)
    name = StrictCharField(max_length=200)
    backend = StrictChoiceField(choices=Backend.choices)
    max_batch_size = StrictIntegerField(required=False, default=0)
    inputs = StrictJSONField()
    outputs = StrictJSONField()
    description = StrictCharField(required=False, allow_blank=True, default="", max_length=2000)


class ModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ModelSerializer
    filterset_class = ModelFilterSet
    ordering_fields = ["name", "created_at"]

    def get_queryset(self):
        return selectors.models_visible(self.request.user)

    @extend_schema(request=ModelCreateSerializer, responses={201: ModelSerializer})
    def create(self, request):
        data = validated(ModelCreateSerializer, request)
        data["team"] = team_for_write(request.user, data["team"])
        model = services.model_create(actor=Actor.from_request(request), **data)
        return Response(ModelSerializer(selectors.model_get(request.user, model.pk)).data, status=status.HTTP_201_CREATED)


class VersionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.__str__", read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True, allow_null=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id", "model", "version", "artifact_uri", "source_uri", "checksum", "size_bytes", "files",
            "metadata", "created_by", "created_at",
        ]


class VersionCreateSerializer(StrictSerializer):
    version = StrictIntegerField(min_value=1, help_text="An integer of 1 or more. Versions are immutable.")
    source_uri = StrictCharField(
        required=False, max_length=1024,
        help_text="A build in the team's staging area, s3://<bucket>/<staging prefix>/<team>/<folder>/, laid out as a "
                  "Triton version directory.",
    )
    files = serializers.ListField(child=serializers.FileField(), required=False, help_text="Files of the version directory (multipart).")
    archive = serializers.FileField(required=False, help_text="A .tar, .tar.gz or .zip of the version directory (multipart).")
    metadata = StrictJSONField(required=False)


class UploadLimitMultiPartParser(parsers.MultiPartParser):
    """Refuse an oversized upload before reading its body."""

    def parse(self, stream, media_type=None, parser_context=None):
        check_upload_length(int(parser_context["request"].META.get("CONTENT_LENGTH") or 0))
        return super().parse(stream, media_type, parser_context)


class VersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = VersionSerializer
    queryset = ModelVersion.objects.none()  # for the schema only; get_queryset scopes it
    lookup_field = "version"
    lookup_value_regex = r"\d+"
    parser_classes = [JSONParser, UploadLimitMultiPartParser]
    filterset_fields = []

    def get_model(self) -> Model:
        return selectors.model_get(self.request.user, self.kwargs["model_pk"])

    def get_queryset(self):
        return selectors.versions_of(self.get_model())

    @extend_schema(
        request={"application/json": VersionCreateSerializer, "multipart/form-data": VersionCreateSerializer},
        responses={201: VersionSerializer, 200: VersionSerializer},
    )
    def create(self, request, model_pk=None):
        model = self.get_model()
        data = validated(VersionCreateSerializer, request)
        version, created = services.version_register(
            actor=Actor.from_request(request),
            model=model,
            version=data["version"],
            source_uri=data.get("source_uri"),
            contents=uploaded_contents(data.get("files"), data.get("archive")),
            contents_field=upload_field(data.get("files"), data.get("archive")),
            metadata=data.get("metadata"),
        )
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class LabelSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField(source="version.version")
    computed = serializers.BooleanField(help_text="true for latest, which is the highest ready version")
    updated_at = serializers.DateTimeField()


class LabelSetSerializer(StrictSerializer):
    version = StrictIntegerField(min_value=1)
    reason = StrictCharField(max_length=1000)
    expected_version = StrictIntegerField(
        required=False, allow_null=True, help_text="Move only if the label points here now (null: only if it does not exist)."
    )


class LabelDeleteSerializer(StrictSerializer):
    reason = StrictCharField(max_length=1000)


class LabelMoveSerializer(serializers.ModelSerializer):
    from_version = serializers.IntegerField(source="from_version.version", default=None, read_only=True, allow_null=True,
                                            help_text="null when the label was created.")
    to_version = serializers.IntegerField(source="to_version.version", default=None, read_only=True, allow_null=True,
                                          help_text="null when the label was deleted.")

    class Meta:
        model = LabelMove
        fields = ["id", "label", "from_version", "to_version", "actor_name", "source", "reason", "created_at"]


class LabelViewSet(viewsets.ViewSet):
    """Version labels of a model. ``latest`` is computed and cannot be set."""

    lookup_field = "name"
    lookup_value_regex = r"[^/]+"

    def _model(self, request, model_pk) -> Model:
        return selectors.model_get(request.user, model_pk)

    @extend_schema(responses=LabelSerializer(many=True))
    def list(self, request, model_pk=None):
        return Response(LabelSerializer(selectors.labels_of(self._model(request, model_pk)), many=True).data)

    @extend_schema(responses=VersionSerializer)
    def retrieve(self, request, model_pk=None, name=None):
        """Resolve a label to its version."""
        return Response(VersionSerializer(selectors.label_resolve(self._model(request, model_pk), name)).data)

    @extend_schema(request=LabelSetSerializer, responses={200: LabelSerializer, 201: LabelSerializer})
    def update(self, request, model_pk=None, name=None):
        model = self._model(request, model_pk)
        data = validated(LabelSetSerializer, request)
        label, changed = labels.label_set(actor=Actor.from_request(request), model=model, name=name, **data)
        body = {"name": label.name, "version": label.version, "computed": False, "updated_at": label.updated_at}
        return Response(LabelSerializer(body).data, status=status.HTTP_201_CREATED if changed else status.HTTP_200_OK)

    @extend_schema(
        parameters=[OpenApiParameter("reason", str, required=True, description='Why. A JSON body {"reason": ...} works too.')],
        responses={204: None},
    )
    def destroy(self, request, model_pk=None, name=None):
        model = self._model(request, model_pk)
        if request.data:
            data = validated(LabelDeleteSerializer, request)
        else:  # OpenAPI clients send no body with DELETE, so the reason may come in the query
            query = LabelDeleteSerializer(data={"reason": request.query_params.get("reason")})
            query.is_valid(raise_exception=True)
            data = query.validated_data
        labels.label_delete(actor=Actor.from_request(request), model=model, name=name, **data)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(list=extend_schema(parameters=[OpenApiParameter("label", str, description="Only this label's moves.")]))
class LabelHistoryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Every create, move and delete of the model's labels, newest first (filter: ?label=stable)."""

    serializer_class = LabelMoveSerializer
    queryset = LabelMove.objects.none()  # for the schema only; get_queryset scopes it

    def get_queryset(self):
        model = selectors.model_get(self.request.user, self.kwargs["model_pk"])
        return selectors.label_history(model, self.request.query_params.get("label") or None)


class ResolveQuerySerializer(serializers.Serializer):
    team = serializers.CharField()
    model = serializers.CharField()
    label = serializers.CharField(default="latest")


class ResolveView(viewsets.ViewSet):
    """For CI and the gateway: ``GET /api/v1/resolve/?team=vision&model=fraud-scorer&label=stable``."""

    @extend_schema(parameters=[ResolveQuerySerializer], responses=VersionSerializer)
    def list(self, request):
        query = ResolveQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        model = selectors.models_visible(request.user).filter(
            team__slug=query.validated_data["team"], name=query.validated_data["model"]
        ).first()
        if model is None:
            raise Http404("No such model.")
        return Response(VersionSerializer(selectors.label_resolve(model, query.validated_data["label"])).data)
