"""UI routes of the fleet, mounted at the site root."""
from django.urls import path

from controlplane.fleet import views

urlpatterns = [
    path("fleet/", views.fleet, name="fleet"),
    path("fleet/servers/new/", views.server_register, name="server-register"),
    path("fleet/servers/<int:pk>/", views.server_detail, name="server-detail"),
    path("fleet/servers/<int:pk>/edit/", views.server_edit, name="server-edit"),
    path("fleet/servers/<int:pk>/remove/", views.server_remove, name="server-remove"),
    path("fleet/pools/new/", views.pool_create, name="pool-create"),
    path("fleet/pools/<str:name>/edit/", views.pool_edit, name="pool-edit"),
    path("fleet/pools/<str:name>/remove/", views.pool_remove, name="pool-remove"),
]
