from django.urls import path

from controlplane.audit import views

urlpatterns = [
    path("", views.audit_log, name="audit"),
    path("chain/", views.audit_chain, name="audit-chain"),
    path("verify-full/", views.audit_verify_full, name="audit-verify-full"),
]
