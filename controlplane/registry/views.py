from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from controlplane.accounts.models import Role
from controlplane.accounts.selectors import has_role
from controlplane.common.ui import REFUSALS, flash_refusal, ui_actor
from controlplane.placements import ui as placements_ui
from controlplane.registry import labels, selectors
from controlplane.registry.filters import ModelFilterSet
from controlplane.serving import ui as serving_ui


@login_required
def model_list(request):
    filterset = ModelFilterSet(request.GET, queryset=selectors.models_visible(request.user))
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    return render(request, "registry/model_list.html", {"filter": filterset, "page": page})


VERSIONS_ON_PAGE = 25  # the newest; the API lists them all


@login_required
def model_detail(request, pk):
    model = selectors.model_get(request.user, pk)
    context = {
        "model": model,
        "versions": selectors.versions_of(model)[:VERSIONS_ON_PAGE],
        "history": selectors.model_history(model)[:20],
        "labels": selectors.labels_of(model),
        "label_moves": selectors.label_history(model)[:20],
        "can_deploy": has_role(request.user, model.team, Role.DEPLOYER),
    }
    context.update(serving_ui.model_page_context(model, request.user))
    context.update(placements_ui.model_page_context(model, request.user))
    return render(request, "registry/model_detail.html", context)


def _int_or_none(value: str):
    """'' -> None, '3' -> 3; anything else stays a string so the service names the bad field."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return value


@login_required
@require_POST
def label_move(request, pk):
    """Create or move a label from the model page. The form carries the version it saw (from → to)."""
    model = selectors.model_get(request.user, pk)
    name = request.POST.get("name", "")
    try:
        label, changed = labels.label_set(
            actor=ui_actor(request),
            model=model,
            name=name,
            version=_int_or_none(request.POST.get("version")),
            reason=request.POST.get("reason", ""),
            expected_version=_int_or_none(request.POST.get("expected_version")),
        )
        messages.success(request, f"{name} now points at v{label.version.version}." if changed else f"{name} already points there.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect(f"{model.get_absolute_url()}#labels")


@login_required
@require_POST
def label_delete(request, pk):
    model = selectors.model_get(request.user, pk)
    name = request.POST.get("name", "")
    try:
        labels.label_delete(actor=ui_actor(request), model=model, name=name, reason=request.POST.get("reason", ""))
        messages.success(request, f"Label {name} deleted.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect(f"{model.get_absolute_url()}#labels")
