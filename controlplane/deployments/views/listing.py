"""The Deployments page: every deployment the user may see."""
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET

from controlplane.deployments import selectors

PER_PAGE = 50


@login_required
@require_GET
def deployment_list(request):
    page = Paginator(selectors.deployments_visible(request.user), PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "deployments/deployment_list.html", {"page": page})


urlpatterns = [
    path("deployments/", deployment_list, name="deployments"),
]
