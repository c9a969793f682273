"""API routes of this app, mounted under /api/v1/."""
from rest_framework.routers import SimpleRouter

from controlplane.deployments.api import DeploymentViewSet

router = SimpleRouter()
router.register("deployments", DeploymentViewSet, basename="deployment")

urlpatterns = router.urls
