from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from controlplane.accounts import services
from controlplane.accounts.selectors import visible_teams
from controlplane.accounts.models import Team
from controlplane.audit.context import Actor
from controlplane.common.api import StrictSerializer, validated


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "slug", "display_name", "created_at"]


class TeamCreateSerializer(StrictSerializer):
    slug = serializers.CharField(max_length=200)
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = TeamSerializer
    filterset_fields = ["slug"]
    lookup_field = "slug"

    def get_queryset(self):
        return visible_teams(self.request.user)

    @extend_schema(request=TeamCreateSerializer, responses={201: TeamSerializer})
    def create(self, request):
        team = services.team_create(actor=Actor.from_request(request), **validated(TeamCreateSerializer, request))
        return Response(TeamSerializer(team).data, status=status.HTTP_201_CREATED)


def team_for_write(user, slug: str, field: str = "team") -> Team:
    """Resolve a team named in a request body. Unknown and foreign teams get the same answer."""
    team = visible_teams(user).filter(slug=slug).first()
    if team is None:
        raise ValidationError({field: f"No team named {slug!r} among your teams."})
    return team
