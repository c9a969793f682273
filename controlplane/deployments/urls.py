"""UI routes of this app, mounted at the site root."""
from django.urls import path

from controlplane.deployments import views

urlpatterns = [
    path("deployments/", views.deployment_list, name="deployments"),
    path("deployments/<int:pk>/", views.deployment_detail, name="deployment-detail"),
]
