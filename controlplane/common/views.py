from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views import defaults
from drf_spectacular.views import SpectacularSwaggerSplitView

from controlplane.fleet.selectors import fleet_summary
from controlplane.registry.selectors import models_visible


@login_required
def overview(request):
    models = models_visible(request.user)
    return render(
        request,
        "overview.html",
        {"model_count": models.count(), "recent_models": models.order_by("-created_at")[:5], "fleet": fleet_summary()},
    )


# Swagger UI: the split view serves its init script as a separate file, so script-src stays
# 'self'. swagger-ui.css draws its icons from data: URIs, so this page alone may load data: images.
api_docs = csp_update({"img-src": ["data:"]})(
    SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html")
)


def page_not_found(request, exception):
    """An unknown URL under /api/ is a JSON 404 in the API's error shape, not an HTML page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
