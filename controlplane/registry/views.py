from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from controlplane.placements import ui as placements_ui
from controlplane.registry import selectors
from controlplane.serving import ui as serving_ui
from controlplane.registry.filters import ModelFilterSet


@login_required
def model_list(request):
    filterset = ModelFilterSet(request.GET, queryset=selectors.models_visible(request.user))
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    return render(request, "registry/model_list.html", {"filter": filterset, "page": page})


@login_required
def model_detail(request, pk):
    model = selectors.model_get(request.user, pk)
    context = {
        "model": model,
        "versions": selectors.versions_of(model)[:100],
        "history": selectors.model_history(model)[:20],
    }
    context.update(serving_ui.model_page_context(model, request.user))
    context.update(placements_ui.model_page_context(model, request.user))
    return render(request, "registry/model_detail.html", context)
