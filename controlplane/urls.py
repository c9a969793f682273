from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from controlplane.accounts import views as accounts_views
from controlplane.common import views as common_views
from controlplane.registry import views as registry_views

urlpatterns = [
    path("", common_views.overview, name="overview"),
    path("models/", registry_views.model_list, name="model-list"),
    path("models/new/", registry_views.model_register, name="model-register"),
    path("models/<int:pk>/", registry_views.model_detail, name="model-detail"),
    path("models/<int:pk>/versions/new/", registry_views.version_register, name="version-register"),
    path("models/<int:pk>/versions/upload/", registry_views.version_upload, name="version-upload"),
    path("models/<int:pk>/versions/from-s3/", registry_views.version_from_s3, name="version-from-s3"),
    path("models/<int:pk>/labels/move/", registry_views.label_move, name="label-move"),
    path("models/<int:pk>/labels/delete/", registry_views.label_delete, name="label-delete"),
    path("", include("controlplane.serving.urls")),
    path("", include("controlplane.placements.urls")),
    path("", include("controlplane.fleet.urls")),
    path("", include("controlplane.endpoints.urls")),
    path("", include("controlplane.deployments.urls")),
    path("audit/", include("controlplane.audit.urls")),
    path("team/", accounts_views.team, name="team"),
    path("team/<slug:slug>/members/", accounts_views.member_add, name="member-add"),
    path("team/<slug:slug>/members/<str:username>/role/", accounts_views.member_role, name="member-role"),
    path("team/<slug:slug>/members/<str:username>/remove/", accounts_views.member_remove, name="member-remove"),
    path("team/<slug:slug>/quota/", accounts_views.quota_set, name="quota-set"),
    path("team/tokens/", accounts_views.token_issue, name="token-issue"),
    path("team/tokens/<int:pk>/revoke/", accounts_views.token_revoke, name="token-revoke"),
    path("login/", accounts_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(("controlplane.api_urls", "api"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", common_views.api_docs, name="api-docs"),
]

handler404 = "controlplane.common.views.page_not_found"
