"""htmx endpoints of the serving config editor. Each one calls a service or the preview; the
fragments answer 200 with inline errors (htmx 2 does not swap 4xx answers), 403 when the role
is missing and 404 for models of other teams."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from controlplane.common.ui import flash_refusal, is_htmx, ui_actor
from controlplane.registry.selectors import model_get
from controlplane.serving import selectors, services, ui
from controlplane.serving.diff import spec_diff
from controlplane.serving.preview import serving_config_preview
from controlplane.serving.validation import validate_spec


def _section(request, model, **kwargs):
    return render(request, "serving/_model_section.html", {"serving": ui.section_context(model, request.user, **kwargs)})


def _done(request, model, message: str, level: str = "success"):
    if is_htmx(request):
        return _section(request, model, message=message, message_level=level)
    messages.add_message(request, messages.ERROR if level == "error" else messages.SUCCESS, message)
    return redirect(f"{reverse('model-detail', args=[model.pk])}#serving-config")


def _refused(request, model, text: str):
    if is_htmx(request):
        return HttpResponseForbidden(text)
    messages.error(request, text)
    return redirect(f"{reverse('model-detail', args=[model.pk])}#serving-config")


@login_required
@require_POST
def serving_preview(request, pk):
    model = model_get(request.user, pk)
    spec, parse_errors = ui.spec_from_form(ui.form_from_post(request.POST))
    preview = serving_config_preview(model, spec)
    if parse_errors:
        preview = {**preview, "valid": False, "errors": {**preview["errors"], **parse_errors},
                   "changes": None, "rendered": None}
    return render(request, "serving/_preview.html", {**ui.preview_context(preview), "oob": True})


@login_required
@require_POST
def serving_save(request, pk):
    model = model_get(request.user, pk)
    form = ui.form_from_post(request.POST)
    spec, errors = ui.spec_from_form(form)
    reason = form["reason"].strip()
    if not reason:
        errors["reason"] = ["Say why you change the config; it goes into the audit log."]
    try:
        if errors:
            # Show the spec's own problems too, not only the missing reason.
            errors = {**serving_config_preview(model, spec)["errors"], **errors}
            raise ValidationError(errors)
        config = services.serving_config_save(actor=ui_actor(request), model=model, spec=spec,
                                              reason=reason)
    except PermissionDenied as exc:
        return _refused(request, model, str(exc))
    except ValidationError as exc:
        if not is_htmx(request):
            flash_refusal(request, exc)
            return redirect(f"{reverse('model-detail', args=[model.pk])}#serving-config")
        return _section(request, model, form=form, errors=exc.message_dict,
                        preview=ui.preview_context(serving_config_preview(model, spec)))
    if not config.created:
        return _done(request, model, f"Nothing to save: revision {config.revision} already has this config.")
    return _done(request, model, f"Saved serving config revision {config.revision}.")


@login_required
@require_POST
def serving_rollback(request, pk, revision):
    model = model_get(request.user, pk)
    selectors.serving_config_get(model, revision)
    reason = request.POST.get("reason") or request.headers.get("HX-Prompt") or ""
    try:
        config = services.serving_config_rollback(actor=ui_actor(request), model=model,
                                                  revision=revision, reason=reason)
    except PermissionDenied as exc:
        return _refused(request, model, str(exc))
    except ValidationError as exc:
        return _done(request, model, "Not rolled back: " + "; ".join(" ".join(v) for v in exc.message_dict.values()), "error")
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
