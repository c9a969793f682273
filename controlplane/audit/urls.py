from django.urls import path

from controlplane.audit import views

urlpatterns = [
    path("", views.audit_log, name="audit"),
]
