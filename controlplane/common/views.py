from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views import defaults
from drf_spectacular.views import SpectacularSwaggerSplitView

from controlplane.common import overview as selectors


@login_required
def overview(request):
    """What is moving and what it costs, for the user's teams. `?part=deployments` answers the
    deployments part alone, which the page loads apart (like its charts) and then polls with htmx
    every few seconds: the page answers without waiting for it, and each part stays cheap."""
    now = timezone.now()
    if request.GET.get("part") == "deployments":
        moving = selectors.deployments_moving(request.user, now=now)
        return render(request, "overview/_deployments.html", {"moving": moving})
    quotas, more_quotas = selectors.team_quotas(request.user)
    context = {
        "fleet": selectors.fleet_health(), "gateway": selectors.gateway_health(now),
        "events": selectors.audit_recent(request.user), "quotas": quotas, "more_quotas": more_quotas,
    }
    return render(request, "overview.html", context)


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
