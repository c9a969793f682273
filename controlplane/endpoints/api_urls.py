"""API routes of this app, mounted under /api/v1/."""
from rest_framework.routers import SimpleRouter

from controlplane.endpoints.api import EndpointViewSet

router = SimpleRouter()
router.register("endpoints", EndpointViewSet, basename="endpoint")

urlpatterns = router.urls
