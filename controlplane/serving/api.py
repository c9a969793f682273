"""REST API for serving configs: /api/v1/models/{model_pk}/serving-configs/...

A model of another team is a 404, exactly like a missing one (registry's model_get). Spec
errors are keyed ``spec.<field path>``, so the same keys come back from a refused POST and from
a preview.
"""
from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.audit.context import Actor
from controlplane.common.api import (
    INT32_MAX,
    StrictCharField,
    StrictIntegerField,
    StrictJSONField,
    StrictSerializer,
    validated,
)
from controlplane.registry import selectors as registry_selectors
from controlplane.serving import selectors, services
from controlplane.serving.diff import spec_diff
from controlplane.serving.preview import serving_config_preview
from controlplane.serving.render import render_model_config


class ServingConfigSerializer(serializers.Serializer):
    revision = serializers.IntegerField()
    spec = serializers.JSONField()
    reason = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True, allow_null=True)
    created_at = serializers.DateTimeField()


class ServingConfigDetailSerializer(ServingConfigSerializer):
    rendered = serializers.JSONField(help_text="The Triton ModelConfig JSON sent as the load override.")
    rendered_for_versions = serializers.ListField(child=serializers.IntegerField())


class SaveSerializer(StrictSerializer):
    spec = StrictJSONField(help_text="The serving spec: max_batch_size, dynamic_batching, instance_group, "
                                 "version_policy, model_warmup, response_cache (Triton's field names).")
    reason = StrictCharField(max_length=2000, help_text="Why: required, it goes into the audit log.")


class PreviewSerializer(StrictSerializer):
    spec = StrictJSONField()
    pool = StrictCharField(required=False, max_length=63,
                                 help_text="A pool to check the spec against (KIND_GPU on a pool without GPUs).")
    versions = serializers.ListField(child=StrictIntegerField(min_value=1), required=False, max_length=100,
                                     help_text="Render as a placement loading these versions.")


class RollbackSerializer(StrictSerializer):
    reason = StrictCharField(max_length=2000)


PreviewResponse = inline_serializer("ServingConfigPreview", {
    "valid": serializers.BooleanField(),
    "errors": serializers.DictField(child=serializers.ListField(child=serializers.CharField())),
    "spec": serializers.JSONField(allow_null=True),
    "current_revision": serializers.IntegerField(allow_null=True),
    "changes": serializers.JSONField(allow_null=True),
    "rendered": serializers.JSONField(allow_null=True),
})
DiffResponse = inline_serializer("ServingConfigDiff", {
    "from": serializers.IntegerField(), "to": serializers.IntegerField(), "changes": serializers.JSONField(),
})


REVISION_SCHEMA = {"type": "integer", "minimum": 1, "maximum": INT32_MAX}


def _revision_param(request, name: str) -> int:
    raw = request.query_params.get(name, "")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= INT32_MAX:
        raise ValidationError({name: f"Give a revision number from 1 to {INT32_MAX}."})
    return int(raw)


def _versions_param(request) -> list[int]:
    raw = request.query_params.get("versions", "").strip()
    if not raw:
        return []
    parts = [p.strip() for p in raw.split(",")]
    if not all(p.isascii() and p.isdigit() and 1 <= int(p) <= INT32_MAX for p in parts):
        raise ValidationError({"versions": "Give version numbers separated by commas, such as 1,2."})
    return [int(p) for p in parts]


class ServingConfigViewSet(viewsets.GenericViewSet):
    """Serving config revisions of a model, newest first. Saving needs the team admin role."""

    serializer_class = ServingConfigSerializer
    lookup_field = "revision"
    lookup_value_regex = r"\d+"
    filter_backends = []

    def get_model(self):
        return registry_selectors.model_get(self.request.user, self.kwargs["model_pk"])

    def get_queryset(self):
        return selectors.serving_configs_of(self.get_model())

    def list(self, request, model_pk=None):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ServingConfigSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("versions", OpenApiTypes.STR, description="Render for these versions, e.g. 1,2; "
                                     "by default the spec's version policy is rendered.")],
        responses=ServingConfigDetailSerializer,
    )
    def retrieve(self, request, model_pk=None, revision=None):
        model = self.get_model()
        config = selectors.serving_config_get(model, revision)
        versions = _versions_param(request)
        data = dict(ServingConfigSerializer(config).data)
        data["rendered"] = render_model_config(model, config, versions=versions)
        data["rendered_for_versions"] = versions
        return Response(data)

    @extend_schema(request=SaveSerializer, responses={201: ServingConfigSerializer, 200: ServingConfigSerializer})
    def create(self, request, model_pk=None):
        """Save a new revision: 201. A spec equal to the current revision writes nothing: 200 with
        the current revision, so a retried request is harmless."""
        model = self.get_model()
        data = validated(SaveSerializer, request)
        config = services.serving_config_save(actor=Actor.from_request(request), model=model, spec=data["spec"],
                                              reason=data["reason"])
        return Response(ServingConfigSerializer(config).data,
                        status=status.HTTP_201_CREATED if config.created else status.HTTP_200_OK)

    @extend_schema(request=RollbackSerializer, responses={201: ServingConfigSerializer, 200: ServingConfigSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request, model_pk=None, revision=None):
        """Write a new revision equal to this one (201), or 200 if it already is the current one."""
        model = self.get_model()
        selectors.serving_config_get(model, revision)
        data = validated(RollbackSerializer, request)
        config = services.serving_config_rollback(actor=Actor.from_request(request), model=model,
                                                  revision=int(revision), reason=data["reason"])
        return Response(ServingConfigSerializer(config).data,
                        status=status.HTTP_201_CREATED if config.created else status.HTTP_200_OK)

    @extend_schema(
        parameters=[OpenApiParameter(name, REVISION_SCHEMA, required=True) for name in ("from", "to")],
        responses=DiffResponse,
    )
    @action(detail=False, methods=["get"])
    def diff(self, request, model_pk=None):
        model = self.get_model()
        numbers = {name: _revision_param(request, name) for name in ("from", "to")}
        specs = dict(selectors.serving_configs_of(model).filter(revision__in=numbers.values()).values_list("revision", "spec"))
        missing = {name: f"Model {model} has no revision {n}." for name, n in numbers.items() if n not in specs}
        if missing:
            raise ValidationError(missing)
        return Response({"from": numbers["from"], "to": numbers["to"],
                         "changes": spec_diff(specs[numbers["from"]], specs[numbers["to"]])})

    @extend_schema(request=PreviewSerializer, responses=PreviewResponse)
    @action(detail=False, methods=["post"])
    def preview(self, request, model_pk=None):
        """Validate a spec and show its diff against the current revision and its rendered Triton
        JSON. Writes nothing; an invalid spec is still a 200, with ``valid: false`` and the errors."""
        model = self.get_model()
        data = validated(PreviewSerializer, request)
        pool_has_gpus = None
        if "pool" in data:
            pool = selectors.pool_named(data["pool"])
            if pool is None:
                raise ValidationError({"pool": f"No pool named {data['pool']!r}."})
            pool_has_gpus = selectors.pool_has_gpus(pool)
        return Response(serving_config_preview(model, data["spec"], pool_has_gpus=pool_has_gpus,
                                               versions=data.get("versions")))
