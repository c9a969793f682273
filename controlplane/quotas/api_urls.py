from rest_framework.routers import SimpleRouter

from controlplane.quotas.api import QuotaViewSet

router = SimpleRouter()
router.register("", QuotaViewSet, basename="quota")

urlpatterns = router.urls
