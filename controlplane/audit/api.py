from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.audit import exports
from controlplane.audit.filters import AuditEventFilterSet
from controlplane.audit.models import AuditEvent
from controlplane.audit.selectors import audit_chain_verify, audit_events_visible


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")
    team = serializers.CharField(source="team.slug", default=None, allow_null=True, read_only=True,
                                 help_text="null for platform events (servers, pools).")

    class Meta:
        model = AuditEvent
        fields = [
            "id", "created_at", "actor", "actor_user_id", "token_id", "source", "request_id", "ip", "team",
            "object_type", "object_id", "object_repr", "action", "before", "after", "reason", "prev_hash", "hash",
        ]


class ChainReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="How many events were re-hashed.")
    first_broken_id = serializers.IntegerField(allow_null=True, help_text="The first event whose link is broken.")
    problem = serializers.CharField()


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The audit log, newest first, limited to the caller's teams (platform admins see all)."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self):
        return audit_events_visible(self.request.user)

    @extend_schema(
        operation_id="audit_events_export",
        filters=True,
        parameters=[OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=["csv", "json"])],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
            (200, "application/json"): OpenApiResponse(AuditEventSerializer(many=True)),
        },
        description="All events that match the filters, as CSV or one JSON array, streamed.",
    )
    def export(self, request, fmt):
        return exports.export_response(self.filter_queryset(self.get_queryset()), fmt)


class AuditChainVerifyView(APIView):
    """Re-hash the whole chain. Reveals only whether it holds and where it first breaks."""

    @extend_schema(responses=ChainReportSerializer)
    def get(self, request):
        return Response(audit_chain_verify().as_dict())
