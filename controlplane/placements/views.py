"""Placement actions from the model page. Each is a form that feeds the service the API calls; a
refusal re-renders the model page with the error next to its field."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from controlplane.common.forms import failure_status, submit
from controlplane.common.ui import ui_actor
from controlplane.placements import selectors, services
from controlplane.placements.forms import PlacementActionForm, PlacementCreateForm
from controlplane.placements.ui import placement_card
from controlplane.registry.selectors import model_get
from controlplane.registry.views import model_page


def _back(model_id) -> str:
    return reverse("model-detail", args=[model_id]) + "#placements"


def _refused(request, model, form, *, placement=None):
    """The model page again, with the refused form's errors where it was submitted."""
    failed = (placement.pk, form) if placement is not None else None
    return model_page(request, model, status=failure_status(form),
                      placement_form=None if failed else form, placement_failed=failed)


@login_required
@require_POST
def placement_create(request, pk):
    model = model_get(request.user, pk)
    form = PlacementCreateForm(request.POST, auto_id="placement-%s")
    result, ok = submit(form, lambda data: services.placement_create(
        actor=ui_actor(request), model=model, versions=data["versions"],
        servers=selectors.servers_named(data["servers"]),
        config=selectors.config_of_model(model, data["config_revision"])))
    if not ok:
        return _refused(request, model, form)
    placement, created = result
    if created:
        messages.success(request, f"Placement {placement.pk} created; loading on {len(form.cleaned_data['servers'])} server(s).")
    else:
        messages.info(request, f"Placement {placement.pk} already places exactly this; nothing changed.")
    return redirect(_back(model.pk))


@login_required
@require_POST
def placement_retry(request, pk):
    placement = selectors.placement_get(request.user, pk)
    form = PlacementActionForm(request.POST)
    moved, ok = submit(form, lambda data: services.placement_retry(actor=ui_actor(request), placement=placement))
    if not ok:
        return _refused(request, placement.model, form, placement=placement)
    if moved:
        messages.success(request, f"Retrying placement {placement.pk} on {', '.join(t.server_name for t in moved)}.")
    else:
        messages.info(request, f"Placement {placement.pk} has no failed or stuck server to retry.")
    return redirect(_back(placement.model_id))


@login_required
@require_POST
def placement_remove(request, pk):
    placement = selectors.placement_get(request.user, pk)
    form = PlacementActionForm(request.POST)
    _, ok = submit(form, lambda data: services.placement_remove(actor=ui_actor(request), placement=placement))
    if not ok:
        return _refused(request, placement.model, form, placement=placement)
    messages.success(request, f"Placement {placement.pk} removed; unloading from its servers.")
    return redirect(_back(placement.model_id))


@login_required
@require_GET
def placement_live(request, pk):
    """htmx fragment: the targets table with what each server says now. Polled every 10 s."""
    placement = selectors.placement_get(request.user, pk)
    live = services.placement_live(placement) if placement.is_active else {}
    return render(request, "placements/_targets.html", {"card": placement_card(placement, live)})
