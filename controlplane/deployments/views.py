"""Deployment pages: the list and a deployment's own page (state, steps, history, gate
evaluations). Read-only for now: people act through the API and the CLI; the browser's forms and
buttons come with the deployments UI."""
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.views.decorators.http import require_GET

from controlplane.deployments import selectors
from controlplane.deployments.machine import actions_allowed

PER_PAGE = 50


@login_required
@require_GET
def deployment_list(request):
    page = Paginator(selectors.deployments_visible(request.user), PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "deployments/deployment_list.html", {"page": page})


@login_required
@require_GET
def deployment_detail(request, pk):
    d = selectors.deployment_get(request.user, pk)
    context = {
        "d": d, "history": selectors.deployment_history(d), "evaluations": selectors.deployment_evaluations(d),
        "actions": actions_allowed(d.state),
    }
    return render(request, "deployments/deployment_detail.html", context)
