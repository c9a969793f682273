"""UI routes of this app (forms and htmx fragments), mounted at the site root."""
from django.urls import path

from controlplane.serving import views

urlpatterns = [
    path("models/<int:pk>/serving-config/preview/", views.serving_preview, name="serving-preview"),
    path("models/<int:pk>/serving-config/save/", views.serving_save, name="serving-save"),
    path("models/<int:pk>/serving-config/diff/", views.serving_diff, name="serving-diff"),
    path("models/<int:pk>/serving-config/<int:revision>/rollback/", views.serving_rollback, name="serving-rollback"),
]
