from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.audit.context import Actor
from controlplane.common.api import (
    StrictCharField,
    StrictIntegerField,
    StrictJSONField,
    StrictSerializer,
    validated,
)
from controlplane.fleet import selectors, services
from controlplane.fleet.filters import PoolFilterSet, ServerFilterSet
from controlplane.fleet.models import Pool, Server


class PoolSerializer(serializers.ModelSerializer):
    server_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Pool
        fields = ["id", "name", "description", "server_count", "created_at"]


class PoolCreateSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=500, required=False, allow_blank=True, default="")


class PoolViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = PoolSerializer
    filterset_class = PoolFilterSet
    lookup_field = "name"

    def get_queryset(self):
        return selectors.pools_list()

    @extend_schema(request=PoolCreateSerializer, responses={201: PoolSerializer})
    def create(self, request):
        pool = services.pool_create(actor=Actor.from_request(request), **validated(PoolCreateSerializer, request))
        return Response(PoolSerializer(selectors.pools_list().get(pk=pool.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PoolCreateSerializer, responses=PoolSerializer)
    def partial_update(self, request, name=None):
        pool = self.get_object()
        data = validated(PoolCreateSerializer, request, partial=True)
        services.pool_update(actor=Actor.from_request(request), pool=pool, **data)
        return Response(PoolSerializer(selectors.pools_list().get(pk=pool.pk)).data)

    def destroy(self, request, name=None):
        services.pool_delete(actor=Actor.from_request(request), pool=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServerSerializer(serializers.ModelSerializer):
    pool = serializers.CharField(source="pool.name")

    class Meta:
        model = Server
        fields = [
            "id", "name", "pool", "http_url", "grpc_url", "metrics_url", "gpu_type", "gpu_count", "labels",
            "status", "is_live", "is_ready", "triton_version", "extensions", "repository_index",
            "last_probe_at", "last_seen_at", "last_error", "created_at", "draining_since",
        ]


class ServerWriteSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    pool = StrictCharField(max_length=63)
    http_url = StrictCharField(max_length=500)
    grpc_url = StrictCharField(max_length=260, required=False, allow_blank=True)
    metrics_url = StrictCharField(max_length=500, required=False, allow_blank=True)
    gpu_type = StrictCharField(max_length=64, required=False, allow_blank=True)
    gpu_count = StrictIntegerField(required=False, min_value=0, max_value=64)
    labels = StrictJSONField(required=False)


def _resolve_pool(data: dict) -> dict:
    if "pool" in data:
        pool = Pool.objects.filter(name=data["pool"]).first()
        if pool is None:
            raise ValidationError({"pool": f"No pool named {data['pool']!r}."})
        data["pool"] = pool
    return data


class ServerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ServerSerializer
    filterset_class = ServerFilterSet
    ordering_fields = ["name", "status", "last_seen_at"]

    def get_queryset(self):
        return selectors.servers_list()

    @extend_schema(request=ServerWriteSerializer, responses={201: ServerSerializer})
    def create(self, request):
        data = _resolve_pool(validated(ServerWriteSerializer, request))
        server = services.server_register(actor=Actor.from_request(request), **data)
        return Response(ServerSerializer(server).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ServerWriteSerializer, responses=ServerSerializer)
    def partial_update(self, request, pk=None):
        server = self.get_object()
        data = _resolve_pool(validated(ServerWriteSerializer, request, partial=True))
        services.server_update(actor=Actor.from_request(request), server=server, **data)
        return Response(ServerSerializer(server).data)

    @extend_schema(
        parameters=[OpenApiParameter(
            "drain", bool, description="If the server still holds active placements: unload them, then remove it. "
            "Without it such a server is refused with 409.",
        )],
        responses={204: None, 202: OpenApiResponse(ServerSerializer, description="Draining: removed once unloaded.")},
    )
    def destroy(self, request, pk=None):
        drain = request.query_params.get("drain", "false")
        if drain not in ("true", "false"):
            raise exceptions.ValidationError({"drain": ["Must be true or false."]})
        server = services.server_remove(actor=Actor.from_request(request), server=self.get_object(), drain=drain == "true")
        if server is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ServerSerializer(server).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=ServerSerializer)
    @action(detail=True, methods=["post"])
    def probe(self, request, pk=None):
        """Probe this server now and return what it reported."""
        server = services.server_probe_now(actor=Actor.from_request(request), server=self.get_object())
        return Response(ServerSerializer(server).data)
