from django.contrib.auth.decorators import login_required
from django.shortcuts import render

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


@login_required
def deployments(request):
    return render(request, "deployments.html")
