from rest_framework.routers import DefaultRouter

from controlplane.accounts.api import TeamViewSet
from controlplane.fleet.api import PoolViewSet, ServerViewSet
from controlplane.registry.api import ModelViewSet, VersionViewSet

router = DefaultRouter()
router.register("teams", TeamViewSet, basename="team")
router.register("models", ModelViewSet, basename="model")
router.register(r"models/(?P<model_pk>\d+)/versions", VersionViewSet, basename="model-version")
router.register("servers", ServerViewSet, basename="server")
router.register("pools", PoolViewSet, basename="pool")

urlpatterns = router.urls
