"""API routes of this app, mounted under /api/v1/."""
from rest_framework.routers import SimpleRouter

from controlplane.notifications.api import WebhookDeliveryViewSet, WebhookViewSet

router = SimpleRouter()
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register(r"webhooks/(?P<webhook_pk>\d+)/deliveries", WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = router.urls
