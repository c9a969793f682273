from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.audit import exports
from controlplane.audit.context import Actor
from controlplane.audit.filters import AuditEventFilterSet
from controlplane.audit.models import AuditEvent
from controlplane.audit.selectors import audit_chain_verify_tail, audit_events_visible
from controlplane.audit.services import audit_verify_full_request


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
    checked = serializers.IntegerField(help_text="How many events this check re-hashed.")
    first_broken_id = serializers.IntegerField(allow_null=True, help_text="The first event whose link is broken.")
    problem = serializers.CharField()
    scope = serializers.ChoiceField(["tail", "full"], help_text="tail: from the newest checkpoint on; full: from the start.")
    start_after = serializers.IntegerField(allow_null=True, help_text="The checkpoint's event: the chain up to it was "
                                           "verified earlier and is trusted; only that event is re-hashed again.")
    checkpoint_at = serializers.DateTimeField(allow_null=True, help_text="When that checkpoint (or a standing break) was found.")
    verified_to = serializers.IntegerField(allow_null=True, help_text="The last event the chain is verified up to.")
    verified_hash = serializers.CharField(help_text="That event's hash.")
    events = serializers.IntegerField(help_text="Events in the chain up to verified_to.")
    head_id = serializers.IntegerField(allow_null=True, help_text="Where the chain ended when the check began.")
    complete = serializers.BooleanField(help_text="False: the check stopped after a bounded number of events; "
                                        "the newer ones, up to head_id, wait for the periodic task.")


class VerifyFullRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class VerifyFullQueuedSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
    request_event_id = serializers.IntegerField(help_text="The audit event recording the request.")


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
    """The quick check: the events after the newest verified checkpoint, at most a bounded number.
    Reveals only whether the chain holds and where it first breaks."""

    @extend_schema(responses=ChainReportSerializer)
    def get(self, request):
        return Response(ChainReportSerializer(audit_chain_verify_tail().as_dict()).data)


class AuditChainVerifyFullView(APIView):
    """Platform admins: queue a full re-verification from the start of the chain, run by a worker.
    Its outcome is an audit event (audit.verify_full) and shows in the quick check."""

    @extend_schema(request=VerifyFullRequestSerializer, responses={202: VerifyFullQueuedSerializer})
    def post(self, request):
        body = VerifyFullRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        event = audit_verify_full_request(actor=Actor.from_request(request), reason=body.validated_data["reason"])
        return Response({"queued": True, "request_event_id": event.pk}, status=status.HTTP_202_ACCEPTED)
