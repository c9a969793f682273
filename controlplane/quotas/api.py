from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.response import Response

from controlplane.accounts.access import authorize_platform_admin
from controlplane.accounts.selectors import visible_teams
from controlplane.audit.context import Actor
from controlplane.common.api import StrictCharField, StrictIntegerField, StrictSerializer, validated
from controlplane.quotas import selectors, services
from controlplane.quotas.models import MAX_QUOTA_GPUS


class ModelUsageSerializer(serializers.Serializer):
    model = serializers.CharField()
    gpus = serializers.IntegerField(help_text="Distinct devices of the model's reservations; a GPU shared with another model counts for each.")


class HolderUsageSerializer(serializers.Serializer):
    kind = serializers.CharField()
    holder = serializers.CharField()
    gpus = serializers.IntegerField(help_text="Distinct devices of the holder's reservations.")
    models = serializers.ListField(child=serializers.CharField())


class QuotaUsageSerializer(serializers.Serializer):
    team = serializers.CharField(source="team.slug")
    gpus = serializers.IntegerField(source="limit", help_text="The quota: GPUs the team may hold. 0 until one is set.")
    held = serializers.IntegerField(
        help_text="Distinct GPU devices, (server, GPU index) pairs, that active reservations hold; a GPU that several "
        "versions, models or reservations share counts once."
    )
    free = serializers.IntegerField()
    over = serializers.IntegerField(help_text="GPUs held beyond the quota (after it was lowered).")
    by_model = ModelUsageSerializer(many=True)
    by_holder = HolderUsageSerializer(many=True)


class QuotaWriteSerializer(StrictSerializer):
    gpus = StrictIntegerField(min_value=0, max_value=MAX_QUOTA_GPUS)
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=2000)


class QuotaViewSet(viewsets.GenericViewSet):
    """GPU quota and use of each team you can see. Platform admins set quotas."""

    serializer_class = QuotaUsageSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "team_slug"
    filter_backends = []

    def get_queryset(self):
        return visible_teams(self.request.user).order_by("slug")

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        usages = selectors.quota_usages(page)
        return self.get_paginated_response(QuotaUsageSerializer([usages[t.pk] for t in page], many=True).data)

    def retrieve(self, request, team_slug=None):
        return Response(QuotaUsageSerializer(selectors.quota_usage(self.get_object())).data)

    @extend_schema(request=QuotaWriteSerializer, responses=QuotaUsageSerializer)
    def update(self, request, team_slug=None):
        """Set the quota: {"gpus": N, "reason": "..."}. PATCH is the same, as gpus is the one field."""
        team = self.get_object()  # 404 before 403, so foreign teams stay invisible
        actor = Actor.from_request(request)
        authorize_platform_admin(actor)  # 403 before looking at the body
        data = validated(QuotaWriteSerializer, request)
        services.quota_set(actor=actor, team=team, gpus=data["gpus"], reason=data["reason"])
        return Response(QuotaUsageSerializer(selectors.quota_usage(team)).data)

    @extend_schema(request=QuotaWriteSerializer, responses=QuotaUsageSerializer)
    def partial_update(self, request, team_slug=None):
        return self.update(request, team_slug=team_slug)
