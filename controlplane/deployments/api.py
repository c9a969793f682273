"""REST API of deployments: /api/v1/deployments/.

The request body is checked by `spec.parse_spec` (the serializers below document it for the
schema); every write goes through `services`. Actions answer 409 when the state does not allow
them, naming the state.
"""
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.audit.context import Actor
from controlplane.common.api import (
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictNumberField,
    StrictSerializer,
    validated,
)
from controlplane.common.parsers import JSONParser
from controlplane.deployments import selectors, services, spec
from controlplane.deployments.machine import actions_allowed
from controlplane.deployments.models import Deployment

# -- input (documents what parse_spec accepts) -----------------------------------------------------


class StepInSerializer(StrictSerializer):
    percent = StrictIntegerField(min_value=1, max_value=100, help_text="Green's share of traffic in this step.")
    bake_s = StrictIntegerField(min_value=0, max_value=spec.MAX_BAKE_S, required=False, help_text="Seconds before judging.")


class CustomGateInSerializer(StrictSerializer):
    name = StrictCharField(max_length=60)
    query = StrictCharField(max_length=spec.MAX_QUERY, help_text=(
        "PromQL; {{endpoint}}, {{model}}, {{variant}} and {{window}} are filled in. "
        "Pin every selector with endpoint={{endpoint}} or model={{model}}."))
    max = StrictNumberField(help_text="The value must stay at or below this.")


class GatesInSerializer(StrictSerializer):
    max_error_ratio = StrictNumberField(required=False, allow_null=True, min_value=0, max_value=1,
                                        help_text="Green's 5xx share at the gateway (default 0.05).")
    max_p99_ms = StrictNumberField(required=False, allow_null=True, min_value=0, help_text="Green's p99, absolute.")
    max_p99_ratio = StrictNumberField(required=False, allow_null=True, min_value=1, max_value=1000,
                                      help_text="Green's p99 over blue's, the same window.")
    custom = CustomGateInSerializer(many=True, required=False, max_length=spec.MAX_CUSTOM)
    min_requests = StrictIntegerField(required=False, min_value=1, max_value=10_000_000)
    interval_s = StrictIntegerField(required=False, min_value=1, max_value=3600)
    window_s = StrictIntegerField(required=False, min_value=5, max_value=spec.MAX_WINDOW_S)
    failures_to_breach = StrictIntegerField(required=False, min_value=1, max_value=100)
    guard = StrictBooleanField(required=False, help_text="The gateway stops sending to a failing green at once.")


class DeploymentInSerializer(StrictSerializer):
    endpoint = StrictCharField(max_length=127, help_text="The endpoint's public name, such as vision.fraud-scorer.")
    version = StrictIntegerField(required=False, allow_null=True, min_value=1, help_text="Green, by number; or label.")
    label = StrictCharField(required=False, allow_null=True, max_length=31, help_text="Green, by label; or version.")
    strategy = StrictChoiceField(choices=spec.STRATEGIES, required=False)
    canary_percent = StrictIntegerField(required=False, min_value=1, max_value=99)
    step_percent = StrictIntegerField(required=False, min_value=1, max_value=99)
    bake_s = StrictIntegerField(required=False, min_value=0, max_value=spec.MAX_BAKE_S)
    steps = StepInSerializer(many=True, required=False, max_length=spec.MAX_STEPS)
    placement = StrictChoiceField(choices=spec.PLACEMENTS, required=False)
    servers = serializers.ListField(child=StrictCharField(max_length=63), required=False, max_length=1000)
    gates = GatesInSerializer(required=False, allow_null=True)
    approval_required = StrictBooleanField(required=False)
    deadline_s = StrictIntegerField(required=False, allow_null=True, min_value=60, max_value=spec.MAX_DEADLINE_S)
    rollback_window_s = StrictIntegerField(required=False, min_value=0, max_value=spec.MAX_DEADLINE_S)
    start_at = serializers.DateTimeField(required=False, allow_null=True)
    reason = StrictCharField(required=False, allow_blank=True, max_length=spec.MAX_REASON)


class ReasonInSerializer(StrictSerializer):
    reason = StrictCharField(required=False, allow_blank=True, max_length=2000, help_text="Why; kept in the audit log.")


# -- output ---------------------------------------------------------------------------------------


class PhaseSerializer(serializers.Serializer):
    name = serializers.CharField()
    traffic_percent = serializers.IntegerField()
    starts_at_s = serializers.FloatField()
    duration_s = serializers.FloatField()
    devices_held = serializers.IntegerField()
    note = serializers.CharField()


class PlanSerializer(serializers.Serializer):
    phases = PhaseSerializer(many=True)
    projected_s = serializers.FloatField(help_text="From the start to the promotion.")
    quota = serializers.IntegerField(help_text="The team's GPU quota, in devices.")
    held_now = serializers.IntegerField()
    peak = serializers.IntegerField()
    surge = serializers.IntegerField(help_text="Devices green adds while blue is loaded.")
    released_at_retire = serializers.IntegerField()
    over_quota = serializers.BooleanField()


class PlanOutSerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    blue_version = serializers.IntegerField()
    green_version = serializers.IntegerField()
    steps = StepInSerializer(many=True)
    servers = serializers.ListField(child=serializers.CharField())
    plan = PlanSerializer()


class TransitionSerializer(serializers.Serializer):
    from_state = serializers.CharField()
    to_state = serializers.CharField()
    event = serializers.CharField()
    actor = serializers.CharField(source="actor_name")
    source = serializers.CharField()
    reason = serializers.CharField()
    at = serializers.DateTimeField()


class EvaluationSerializer(serializers.Serializer):
    step_index = serializers.IntegerField()
    gate = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    limit = serializers.FloatField()
    requests = serializers.FloatField()
    window_s = serializers.IntegerField()
    verdict = serializers.CharField()
    detail = serializers.CharField()
    at = serializers.DateTimeField()


class DeploymentSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug")
    endpoint = serializers.CharField(source="endpoint.public_name")
    blue_version = serializers.IntegerField(source="blue_version.version")
    green_version = serializers.IntegerField(source="green_version.version")
    placement = serializers.CharField(source="placement_mode")
    servers = serializers.SerializerMethodField()
    actions = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta:
        model = Deployment
        fields = [
            "id", "team", "endpoint", "blue_version", "green_version", "target_label", "strategy", "steps", "placement",
            "servers", "gates", "approval_required", "deadline_at", "rollback_window_s", "start_at", "reason",
            "state", "state_changed_at", "cause", "status_text", "step_index", "traffic_percent", "table_version",
            "actions", "plan", "created_by", "created_at", "started_at", "succeeded_at", "finished_at",
        ]

    def get_servers(self, d) -> list[str]:
        return [s["name"] for s in d.servers]

    def get_actions(self, d) -> list[str]:
        return actions_allowed(d.state)


class DeploymentDetailSerializer(DeploymentSerializer):
    history = serializers.SerializerMethodField()
    evaluations = serializers.SerializerMethodField()

    class Meta(DeploymentSerializer.Meta):
        fields = [*DeploymentSerializer.Meta.fields, "history", "evaluations"]

    @extend_schema(responses=TransitionSerializer(many=True))
    def get_history(self, d) -> list[dict]:
        return TransitionSerializer(selectors.deployment_history(d), many=True).data

    @extend_schema(responses=EvaluationSerializer(many=True))
    def get_evaluations(self, d) -> list[dict]:
        return EvaluationSerializer(selectors.deployment_evaluations(d), many=True).data


def _body(request) -> dict:
    if not hasattr(request.data, "keys"):
        raise ValidationError({"body": "Send a JSON object."})
    return dict(request.data)


class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deployments: moving an endpoint from blue to green, step by step, judged by gates.

    Create one (or only plan it), then watch `state`; `actions` lists what the state allows.
    """

    serializer_class = DeploymentSerializer
    parser_classes = [JSONParser]
    filterset_fields = ["state", "strategy"]
    ordering_fields = ["id", "created_at"]
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self):
        return selectors.deployments_visible(self.request.user)

    def get_serializer_class(self):
        return DeploymentDetailSerializer if self.action != "list" else DeploymentSerializer

    def _fresh(self, pk) -> dict:
        return DeploymentDetailSerializer(selectors.deployment_get(self.request.user, pk)).data

    @extend_schema(request=DeploymentInSerializer, responses={201: DeploymentDetailSerializer})
    def create(self, request):
        """Create a deployment; 409 when the endpoint has an active one or the plan exceeds the quota."""
        d = services.deployment_create(actor=Actor.from_request(request), data=_body(request))
        return Response(self._fresh(d.pk), status=status.HTTP_201_CREATED)

    @extend_schema(request=DeploymentInSerializer, responses=PlanOutSerializer)
    @action(detail=False, methods=["post"])
    def plan(self, request):
        """The plan without starting it: steps, projected duration, devices held against the quota."""
        r = services.deployment_plan(actor=Actor.from_request(request), data=_body(request))
        return Response({
            "endpoint": r.endpoint.public_name, "blue_version": r.blue.version, "green_version": r.green.version,
            "steps": [s.as_dict() for s in r.spec.steps], "servers": [s.name for s in r.servers],
            "plan": r.plan.as_dict(),
        })

    def _act(self, request, pk, name: str):
        d = self.get_object()
        data = validated(ReasonInSerializer, request)
        services.deployment_act(actor=Actor.from_request(request), deployment=d, action=name,
                                reason=data.get("reason", ""))
        return Response(self._fresh(d.pk))

    @extend_schema(request=ReasonInSerializer, responses=DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Skip the remaining steps: 100% to green and the label moves."""
        return self._act(request, pk, "promote")

    @extend_schema(request=ReasonInSerializer, responses=DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Traffic back to blue, then green unloaded. After success, within the window: the fast rollback."""
        return self._act(request, pk, "rollback")

    @extend_schema(request=ReasonInSerializer, responses=DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None):
        """Stop: traffic back to blue, green unloaded; ends aborted."""
        return self._act(request, pk, "abort")

    @extend_schema(request=ReasonInSerializer, responses=DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Start a failed deployment again, or a failed rollback."""
        return self._act(request, pk, "retry")

    @extend_schema(request=ReasonInSerializer, responses=DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Judge the gates again after a pause (no data never passes)."""
        return self._act(request, pk, "resume")

    @extend_schema(request=ReasonInSerializer, responses=DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve the promotion of a deployment awaiting approval."""
        return self._act(request, pk, "approve")

    @extend_schema(request=ReasonInSerializer, responses=DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a scheduled deployment before it starts."""
        return self._act(request, pk, "cancel")
