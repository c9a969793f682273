"""UI routes of this app (forms and htmx fragments), mounted at the site root."""
from django.urls import path

from controlplane.placements import views

urlpatterns = [
    path("models/<int:pk>/placements/", views.placement_create, name="placement-create"),
    path("placements/<int:pk>/retry/", views.placement_retry, name="placement-retry"),
    path("placements/<int:pk>/remove/", views.placement_remove, name="placement-remove"),
    path("placements/<int:pk>/live/", views.placement_live, name="placement-live"),
]
