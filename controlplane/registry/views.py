from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from controlplane.registry import selectors
from controlplane.registry.filters import ModelFilterSet


@login_required
def model_list(request):
    filterset = ModelFilterSet(request.GET, queryset=selectors.models_visible(request.user))
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    return render(request, "registry/model_list.html", {"filter": filterset, "page": page})


@login_required
def model_detail(request, pk):
    model = selectors.model_get(request.user, pk)
    return render(
        request,
        "registry/model_detail.html",
        {
            "model": model,
            "versions": selectors.versions_of(model)[:100],
            "history": selectors.model_history(model)[:20],
        },
    )
