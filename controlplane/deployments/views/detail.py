"""A deployment's own page (state, steps, history, gate evaluations)."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET

from controlplane.deployments import selectors
from controlplane.deployments.machine import actions_allowed


@login_required
@require_GET
def deployment_detail(request, pk):
    d = selectors.deployment_get(request.user, pk)
    context = {
        "d": d, "history": selectors.deployment_history(d), "evaluations": selectors.deployment_evaluations(d),
        "actions": actions_allowed(d.state),
    }
    return render(request, "deployments/deployment_detail.html", context)


urlpatterns = [
    path("deployments/<int:pk>/", deployment_detail, name="deployment-detail"),
]
