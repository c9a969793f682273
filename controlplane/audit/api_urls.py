from django.urls import path, re_path

from controlplane.audit.api import (
    AuditChainVerifyFullView,
    AuditChainVerifyView,
    AuditEventViewSet,
)

urlpatterns = [
    path("events/", AuditEventViewSet.as_view({"get": "list"}), name="audit-event-list"),
    path("events/<int:pk>/", AuditEventViewSet.as_view({"get": "retrieve"}), name="audit-event-detail"),
    re_path(r"^events/export\.(?P<fmt>csv|json)$", AuditEventViewSet.as_view({"get": "export"}, pagination_class=None),  # one array
            name="audit-event-export"),
    path("verify/", AuditChainVerifyView.as_view(), name="audit-verify"),
    path("verify/full/", AuditChainVerifyFullView.as_view(), name="audit-verify-full"),
]
