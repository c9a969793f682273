from django.urls import include, path
from rest_framework.routers import DefaultRouter

from controlplane.accounts.api import TeamViewSet, TokenViewSet
from controlplane.fleet.api import PoolViewSet, ServerViewSet
from controlplane.registry.api import LabelHistoryViewSet, LabelViewSet, ModelViewSet, ResolveView, VersionViewSet

router = DefaultRouter()
router.register("teams", TeamViewSet, basename="team")
router.register("tokens", TokenViewSet, basename="token")
router.register("models", ModelViewSet, basename="model")
router.register(r"models/(?P<model_pk>\d+)/versions", VersionViewSet, basename="model-version")
router.register(r"models/(?P<model_pk>\d+)/labels", LabelViewSet, basename="model-label")
router.register(r"models/(?P<model_pk>\d+)/label-history", LabelHistoryViewSet, basename="model-label-history")
router.register("resolve", ResolveView, basename="resolve")
router.register("servers", ServerViewSet, basename="server")
router.register("pools", PoolViewSet, basename="pool")

urlpatterns = [
    path("audit/", include("controlplane.audit.api_urls")),
    path("quotas/", include("controlplane.quotas.api_urls")),
    path("", include("controlplane.serving.api_urls")),
    path("", include("controlplane.placements.api_urls")),
    path("gateway/", include("controlplane.endpoints.gateway_api")),
    path("metrics/", include("controlplane.metrics.api_urls")),
    path("", include("controlplane.endpoints.api_urls")),
    path("", include("controlplane.deployments.api_urls")),
    path("", include("controlplane.notifications.api_urls")),
    *router.urls,
]
