"""API routes of this app, mounted under /api/v1/."""
from rest_framework.routers import SimpleRouter

from controlplane.serving.api import ServingConfigViewSet

router = SimpleRouter()
router.register(r"models/(?P<model_pk>\d+)/serving-configs", ServingConfigViewSet, basename="serving-config")

urlpatterns = router.urls
