"""API routes of this app, mounted under /api/v1/."""
from rest_framework.routers import SimpleRouter

from controlplane.placements.api import PlacementViewSet

router = SimpleRouter()
router.register("placements", PlacementViewSet, basename="placement")

urlpatterns = router.urls
