"""API routes of this app, mounted under /api/v1/metrics/."""
from django.urls import path

from controlplane.metrics.charts_api import SeriesView
from controlplane.metrics.discovery import TargetsView

urlpatterns = [
    path("targets/", TargetsView.as_view(), name="metrics-targets"),
    path("series/", SeriesView.as_view(), name="metrics-series"),
]
