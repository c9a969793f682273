from django.conf import settings
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, parsers, serializers, status, viewsets
from rest_framework.response import Response

from controlplane.accounts.api import team_for_write
from controlplane.audit.context import Actor
from controlplane.common.api import StrictSerializer, validated
from controlplane.common.errors import PayloadTooLarge
from controlplane.registry import selectors, services
from controlplane.registry.artifacts import extract_archive, safe_relpath
from controlplane.registry.filters import ModelFilterSet
from controlplane.registry.models import Backend, Model, ModelVersion


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
    team = serializers.CharField(max_length=63)
    name = serializers.CharField(max_length=200)
    backend = serializers.ChoiceField(choices=Backend.choices)
    max_batch_size = serializers.IntegerField(required=False, default=0)
    inputs = serializers.JSONField()
    outputs = serializers.JSONField()
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


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
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id", "model", "version", "artifact_uri", "source_uri", "checksum", "size_bytes", "files",
            "metadata", "created_by", "created_at",
        ]


class VersionCreateSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1, help_text="An integer of 1 or more. Versions are immutable.")
    source_uri = serializers.CharField(required=False, max_length=1024, help_text="s3://<bucket>/<prefix>/ in Triton's layout.")
    files = serializers.ListField(child=serializers.FileField(), required=False, help_text="Files of the version directory (multipart).")
    archive = serializers.FileField(required=False, help_text="A .tar, .tar.gz or .zip of the version directory (multipart).")
    metadata = serializers.JSONField(required=False)


class UploadLimitMultiPartParser(parsers.MultiPartParser):
    """Refuse an oversized upload before reading its body."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = parser_context["request"]
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        limit = settings.SWITCHYARD_MAX_UPLOAD_BYTES
        if length > limit:
            raise PayloadTooLarge("files", f"The upload is {length} bytes; the limit is {limit} (SWITCHYARD_MAX_UPLOAD_MB).")
        return super().parse(stream, media_type, parser_context)


def _uploaded_contents(data: dict) -> dict[str, bytes] | None:
    files, archive = data.get("files"), data.get("archive")
    if not files and archive is None:
        return None
    limit = settings.SWITCHYARD_MAX_UPLOAD_BYTES
    contents: dict[str, bytes] = {}
    if archive is not None:
        contents.update(extract_archive(archive.name, archive.read(), limit=limit))
    for upload in files or []:
        path = safe_relpath(upload.name, "files")
        if path in contents:
            raise ValidationError({"files": f"{path} is uploaded twice."})
        contents[path] = upload.read()
    total = sum(len(b) for b in contents.values())
    if total > limit:
        raise PayloadTooLarge("files", f"The files add up to {total} bytes; the limit is {limit}.")
    return contents


class VersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = VersionSerializer
    lookup_field = "version"
    lookup_value_regex = r"\d+"
    parser_classes = [parsers.JSONParser, UploadLimitMultiPartParser]
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
            contents=_uploaded_contents(data),
            metadata=data.get("metadata"),
        )
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
