"""Placement actions from the model page. Every action calls a service; refusals come back as messages."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from controlplane.common.ui import REFUSALS, flash_refusal, ui_actor
from controlplane.fleet.models import Server
from controlplane.placements import selectors, services
from controlplane.placements.ui import placement_card
from controlplane.registry.selectors import model_get
from controlplane.serving.models import ServingConfig


def _back(model_id) -> str:
    return reverse("model-detail", args=[model_id]) + "#placements"


def _numbers(values: list[str], field: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValidationError({field: "Versions are whole numbers."}) from None


@login_required
@require_POST
def placement_create(request, pk):
    model = model_get(request.user, pk)
    try:
        versions = _numbers(request.POST.getlist("versions"), "versions")
        # the multi-select sends one value per server; the big-fleet field sends "a, b c"
        names = [n for value in request.POST.getlist("servers") for n in value.replace(",", " ").split()]
        found = {s.name: s for s in Server.objects.filter(name__in=names)}
        servers = [found.get(n) or Server(name=n) for n in names]
        config = None
        if request.POST.get("config_revision"):
            revision = _numbers([request.POST["config_revision"]], "config_revision")[0]
            config = ServingConfig.objects.filter(model=model, revision=revision).first()
            if config is None:
                raise ValidationError({"config_revision": f"{model.name} has no config revision {revision}."})
        placement, created = services.placement_create(
            actor=ui_actor(request), model=model, versions=versions, servers=servers, config=config
        )
        if created:
            messages.success(request, f"Placement {placement.pk} created; loading on {len(servers)} server(s).")
        else:
            messages.info(request, f"Placement {placement.pk} already places exactly this; nothing changed.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect(_back(model.pk))


@login_required
@require_POST
def placement_retry(request, pk):
    placement = selectors.placement_get(request.user, pk)
    try:
        moved = services.placement_retry(actor=ui_actor(request), placement=placement)
        if moved:
            messages.success(request, f"Retrying placement {placement.pk} on {', '.join(t.server_name for t in moved)}.")
        else:
            messages.info(request, f"Placement {placement.pk} has no failed or stuck server to retry.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect(_back(placement.model_id))


@login_required
@require_POST
def placement_remove(request, pk):
    placement = selectors.placement_get(request.user, pk)
    try:
        services.placement_remove(actor=ui_actor(request), placement=placement)
        messages.success(request, f"Placement {placement.pk} removed; unloading from its servers.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect(_back(placement.model_id))


@login_required
@require_GET
def placement_live(request, pk):
    """htmx fragment: the targets table with what each server says now. Polled every 10 s."""
    placement = selectors.placement_get(request.user, pk)
    live = services.placement_live(placement) if placement.is_active else {}
    return render(request, "placements/_targets.html", {"card": placement_card(placement, live)})
