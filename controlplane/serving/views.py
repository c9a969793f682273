"""htmx endpoints of the serving config editor. Saving and rolling back are forms that feed the
API's services; a refusal answers the section with the errors next to their fields and the
status the API would give (400, or 403 without the role; base.html lets htmx swap those), and
404 for models of other teams. Without htmx the whole model page is rendered the same way."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from controlplane.common.forms import failure_status, submit
from controlplane.common.ui import is_htmx, ui_actor
from controlplane.registry.selectors import model_get
from controlplane.registry.views import model_page
from controlplane.serving import selectors, services, ui
from controlplane.serving.diff import spec_diff
from controlplane.serving.forms import RollbackForm, ServingConfigForm
from controlplane.serving.preview import serving_config_preview
from controlplane.serving.validation import validate_spec


def _section(request, model, status=200, **kwargs):
    return render(request, "serving/_model_section.html", {"serving": ui.section_context(model, request.user, **kwargs)},
                  status=status)


def _done(request, model, message: str):
    if is_htmx(request):
        return _section(request, model, message=message)
    messages.success(request, message)
    return redirect(f"{reverse('model-detail', args=[model.pk])}#serving-config")


@login_required
@require_POST
def serving_preview(request, pk):
    """Writes nothing: the form only turns the editor's text into a spec for the preview."""
    model = model_get(request.user, pk)
    form = ServingConfigForm(request.POST)
    form.is_valid()
    preview = serving_config_preview(model, form.spec)
    if form.parse_errors:
        preview = {**preview, "valid": False, "errors": {**preview["errors"], **form.parse_errors},
                   "changes": None, "rendered": None}
    return render(request, "serving/_preview.html", {**ui.preview_context(preview), "oob": True})


def _save(request, model, data):
    try:
        return services.serving_config_save(actor=ui_actor(request), model=model, spec=data["spec"], reason=data["reason"])
    except ValidationError as exc:
        raise ServingConfigForm.route_spec_errors(exc) from None


@login_required
@require_POST
def serving_save(request, pk):
    model = model_get(request.user, pk)
    form = ServingConfigForm(request.POST)
    config, ok = submit(form, lambda data: _save(request, model, data))
    if not ok:
        if not is_htmx(request):
            return model_page(request, model, status=failure_status(form), serving_form=form)
        preview = ui.preview_context(serving_config_preview(model, form.spec)) if hasattr(form, "spec") else None
        return _section(request, model, status=failure_status(form), form=form, preview=preview)
    if not config.created:
        return _done(request, model, f"Nothing to save: revision {config.revision} already has this config.")
    return _done(request, model, f"Saved serving config revision {config.revision}.")


@login_required
@require_POST
def serving_rollback(request, pk, revision):
    model = model_get(request.user, pk)
    selectors.serving_config_get(model, revision)
    # The button asks with hx-prompt, which htmx sends as a header; a plain form posts the field.
    form = RollbackForm({"reason": request.POST.get("reason") or request.headers.get("HX-Prompt") or ""})
    config, ok = submit(form, lambda data: services.serving_config_rollback(
        actor=ui_actor(request), model=model, revision=revision, reason=data["reason"]))
    if not ok:
        why = "; ".join([*form.non_field_errors(), *form.errors.get("reason", [])])
        if not is_htmx(request):
            messages.error(request, f"Not rolled back: {why}")
            return model_page(request, model, status=failure_status(form))
        return _section(request, model, status=failure_status(form), message=f"Not rolled back: {why}", message_level="error")
    if not config.created:
        return _done(request, model, f"Revision {revision} is already the current config.")
    return _done(request, model, f"Rolled back: revision {config.revision} restores revision {revision}.")


@login_required
@require_GET
def serving_diff(request, pk):
    model = model_get(request.user, pk)
    numbers = {}
    for name in ("from", "to"):
        raw = request.GET.get(name, "")
        numbers[name] = int(raw) if raw.isascii() and raw.isdigit() else None  # "²".isdigit() is true
    old = selectors.serving_config_get(model, numbers["from"]) if numbers["from"] else None
    new = selectors.serving_config_get(model, numbers["to"])
    base = old.spec if old else validate_spec({}, model=model)
    context = {"model": model, "old": old, "new": new, "changes": ui.display_changes(spec_diff(base, new.spec))}
    template = "serving/_diff.html" if is_htmx(request) else "serving/diff_page.html"
    return render(request, template, context)
