from datetime import timedelta

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from controlplane.accounts import selectors, services
from controlplane.accounts.models import ApiToken, Membership, Role, Scope, Team
from controlplane.audit.context import Actor
from controlplane.common.api import StrictCharField, StrictChoiceField, StrictIntegerField, StrictSerializer, validated


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "slug", "display_name", "created_at"]


class TeamCreateSerializer(StrictSerializer):
    slug = StrictCharField(max_length=200)
    display_name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]


class MemberAddSerializer(StrictSerializer):
    username = StrictCharField(max_length=150)
    role = StrictChoiceField(choices=Role.choices)


class MemberRoleSerializer(StrictSerializer):
    role = StrictChoiceField(choices=Role.choices)


class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = TeamSerializer
    filterset_fields = ["slug"]
    lookup_field = "slug"

    def get_queryset(self):
        return selectors.visible_teams(self.request.user).order_by("slug")

    @extend_schema(request=TeamCreateSerializer, responses={201: TeamSerializer})
    def create(self, request):
        team = services.team_create(actor=Actor.from_request(request), **validated(TeamCreateSerializer, request))
        return Response(TeamSerializer(team).data, status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], responses=MemberSerializer(many=True))
    @extend_schema(methods=["POST"], request=MemberAddSerializer, responses={201: MemberSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])  # a plain list
    def members(self, request, slug=None):
        """List the team's members, or (team admins) add one with a role."""
        team = self.get_object()
        if request.method == "GET":
            return Response(MemberSerializer(selectors.team_members(team), many=True).data)
        data = validated(MemberAddSerializer, request)
        membership = services.membership_set(
            actor=Actor.from_request(request), team=team, user=selectors.user_by_username(data["username"]), role=data["role"]
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(methods=["PATCH"], request=MemberRoleSerializer, responses=MemberSerializer)
    @extend_schema(methods=["DELETE"], responses={204: None})
    @action(detail=True, methods=["patch", "delete"], url_path=r"members/(?P<username>[^/]+)")
    def member(self, request, slug=None, username=None):
        """Change a member's role, or remove them (team admins)."""
        team = self.get_object()
        membership = get_object_or_404(selectors.team_members(team), user__username=username)
        actor = Actor.from_request(request)
        if request.method == "DELETE":
            services.membership_remove(actor=actor, team=team, user=membership.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = validated(MemberRoleSerializer, request)
        membership = services.membership_set(actor=actor, team=team, user=membership.user, role=data["role"])
        return Response(MemberSerializer(membership).data)


class TokenSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", default=None, allow_null=True, read_only=True,
                                 help_text="null for a personal token.")
    owner = serializers.CharField(source="user.username")
    state = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "owner", "team", "scopes", "state", "created_at", "expires_at",
                  "revoked_at", "last_used_at", "last_used_ip"]

    def get_state(self, token) -> str:
        return token.state(timezone.now())


class TokenCreatedSerializer(TokenSerializer):
    secret = serializers.CharField(help_text="Shown once. Only a hash is kept.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "secret"]


class TokenCreateSerializer(StrictSerializer):
    name = StrictCharField(max_length=100)
    scopes = serializers.ListField(child=StrictChoiceField(choices=Scope.choices), allow_empty=False)
    expires_in_days = StrictIntegerField(min_value=1, max_value=366, default=90)
    team = StrictCharField(required=False, help_text="Make a team token (a service account for CI).")


class TokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your personal tokens, and the tokens of teams you administer."""

    serializer_class = TokenSerializer
    queryset = ApiToken.objects.none()  # for the schema only (typed {id}); get_queryset scopes it

    def get_queryset(self):
        return selectors.tokens_manageable(self.request.user)

    @extend_schema(request=TokenCreateSerializer, responses={201: TokenCreatedSerializer})
    def create(self, request):
        data = validated(TokenCreateSerializer, request)
        team = selectors.team_for_write(request.user, data["team"]) if "team" in data else None
        token, secret = services.token_create(
            actor=Actor.from_request(request),
            user=None if team else request.user,
            team=team,
            name=data["name"],
            scopes=data["scopes"],
            expires_at=timezone.now() + timedelta(days=data["expires_in_days"]),
        )
        token.secret = secret
        return Response(TokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=TokenSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = services.token_revoke(actor=Actor.from_request(request), token=self.get_object())
        return Response(TokenSerializer(token).data)


