from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlplane.accounts.access import require_role
from controlplane.accounts.models import Role
from controlplane.accounts.selectors import has_role, teams_with_role
from controlplane.common.errors import PayloadTooLarge
from controlplane.common.forms import add_refusal, failure_status, submit
from controlplane.common.ui import ui_actor
from controlplane.placements import ui as placements_ui
from controlplane.registry import labels, selectors, services
from controlplane.registry.filters import ModelFilterSet
from controlplane.registry.forms import ModelRegisterForm, VersionFromS3Form, VersionUploadForm
from controlplane.registry.label_forms import LabelDeleteForm, LabelMoveForm
from controlplane.registry.uploads import check_upload_length, upload_field, uploaded_contents
from controlplane.serving import ui as serving_ui


@login_required
def model_list(request):
    filterset = ModelFilterSet(request.GET, queryset=selectors.models_visible(request.user))
    page = Paginator(filterset.qs, 50).get_page(request.GET.get("page"))
    can_register = teams_with_role(request.user, Role.DEPLOYER).exists()
    return render(request, "registry/model_list.html", {"filter": filterset, "page": page, "can_register": can_register})


VERSIONS_ON_PAGE = 25  # the newest; the API lists them all


@login_required
def model_detail(request, pk):
    return model_page(request, selectors.model_get(request.user, pk))


def model_page(request, model, *, status=200, label_failed=None, placement_form=None, placement_failed=None,
               serving_form=None):
    """The model page. A refused form action re-renders it with its bound form, so the errors
    show next to their fields: ``label_failed`` is (kind, label name, form), kind "move",
    "create" or "delete"; ``placement_failed`` is (placement id, form) of a retry or remove;
    ``placement_form`` and ``serving_form`` go to their sections."""
    kind, name, form = label_failed or (None, None, None)
    context = {
        "model": model,
        "versions": selectors.versions_of(model)[:VERSIONS_ON_PAGE],
        "history": selectors.model_history(model)[:20],
        "labels": selectors.labels_of(model),
        "label_moves": selectors.label_history(model)[:20],
        "can_deploy": has_role(request.user, model.team, Role.DEPLOYER),
        "label_failed": {"kind": kind, "name": name, "form": form} if form is not None else None,
        "new_label_form": form if kind == "create" else LabelMoveForm(auto_id="new-label-%s"),
    }
    context.update(serving_ui.model_page_context(model, request.user, form=serving_form))
    context.update(placements_ui.model_page_context(model, request.user, form=placement_form, failed=placement_failed))
    return render(request, "registry/model_detail.html", context, status=status)


def _labels_done(request, model, message: str):
    messages.success(request, message)
    return redirect(f"{model.get_absolute_url()}#labels")


@login_required
@require_POST
def label_move(request, pk):
    """Create or move a label from the model page. A move carries the version it saw (from → to)."""
    model = selectors.model_get(request.user, pk)
    creating = not request.POST.get("expected_version")
    name = request.POST.get("name", "")
    form = LabelMoveForm(request.POST, auto_id="new-label-%s" if creating else f"move-{name}-%s")
    result, ok = submit(form, lambda data: labels.label_set(
        actor=ui_actor(request), model=model, name=data["name"], version=data["version"], reason=data["reason"],
        expected_version=data["expected_version"]))
    if not ok:
        failed = ("create" if creating else "move", name, form)
        return model_page(request, model, status=failure_status(form), label_failed=failed)
    label, changed = result
    return _labels_done(request, model, f"{label.name} now points at v{label.version.version}." if changed
                        else f"{label.name} already points there.")


@login_required
@require_POST
def label_delete(request, pk):
    model = selectors.model_get(request.user, pk)
    form = LabelDeleteForm(request.POST)
    _, ok = submit(form, lambda data: labels.label_delete(
        actor=ui_actor(request), model=model, name=data["name"], reason=data["reason"]))
    if not ok:
        failed = ("delete", request.POST.get("name", ""), form)
        return model_page(request, model, status=failure_status(form), label_failed=failed)
    return _labels_done(request, model, f"Label {form.cleaned_data['name']} deleted.")


# Registering models and versions. The forms feed the services the API calls; a refusal comes
# back next to its field, with the status the API would give it.


@login_required
def model_register(request):
    form = ModelRegisterForm(request.POST if request.method == "POST" else None, user=request.user)
    status = 200 if form.teams else 403  # no team to register into
    if request.method == "POST":

        def create(data):
            try:
                return services.model_create(actor=ui_actor(request), **data)
            except ValidationError as exc:
                raise form.route_tensor_errors(exc) from None

        model, ok = submit(form, create)
        if ok:
            messages.success(request, f"Registered {model}. Register its first version below.")
            return redirect("version-register", pk=model.pk)
        status = failure_status(form)
    return render(request, "registry/model_register.html", {"form": form}, status=status)


def _upload_form(*args):
    return VersionUploadForm(*args, auto_id="upload_%s")


def _s3_form(model, *args):
    return VersionFromS3Form(*args, auto_id="s3_%s", staging_uri=services.staging_uri(model.team))


def _version_page(request, model, *, upload_form=None, s3_form=None, status=200):
    context = {
        "model": model,
        "upload_form": upload_form or _upload_form(None, None),
        "s3_form": s3_form or _s3_form(model),
        "max_upload": settings.SWITCHYARD_MAX_UPLOAD_BYTES,
    }
    if upload_form is None:
        context["upload_form"].initial["version"] = (model.latest_version or 0) + 1
    if s3_form is None:
        context["s3_form"].initial["version"] = (model.latest_version or 0) + 1
    return render(request, "registry/version_register.html", context, status=status)


def _registered(request, model, version, created):
    if created:
        messages.success(request, f"Registered {model} v{version.version}.")
    else:
        messages.info(request, f"{model} v{version.version} already holds exactly this; nothing changed.")
    url = f"{model.get_absolute_url()}#versions"
    if request.headers.get("X-Requested-With") == "XMLHttpRequest":  # the upload form's script
        return JsonResponse({"location": url}, status=201 if created else 200)
    return redirect(url)


@login_required
@require_GET
def version_register(request, pk):
    model = selectors.model_get(request.user, pk)
    require_role(request.user, model.team, Role.DEPLOYER)  # the service checks again on submit
    return _version_page(request, model)


@login_required
@require_POST
def version_upload(request, pk):
    model = selectors.model_get(request.user, pk)
    try:  # before the body is read, as the API does
        check_upload_length(int(request.META.get("CONTENT_LENGTH") or 0))
    except PayloadTooLarge as exc:
        form = _upload_form({}, {})
        form.full_clean()
        form.errors.clear()  # nothing was read, so only the refusal counts
        add_refusal(form, exc)
        return _version_page(request, model, upload_form=form, status=exc.status_code)
    form = _upload_form(request.POST, request.FILES)

    def register(data):
        files, archive = data["files"], data["archive"]
        return services.version_register(
            actor=ui_actor(request), model=model, version=data["version"],
            contents=uploaded_contents(files, archive) or {}, contents_field=upload_field(files, archive),
            metadata=data["metadata"],
        )

    result, ok = submit(form, register)
    if ok:
        return _registered(request, model, *result)
    return _version_page(request, model, upload_form=form, status=failure_status(form))


@login_required
@require_POST
def version_from_s3(request, pk):
    model = selectors.model_get(request.user, pk)
    form = _s3_form(model, request.POST)

    def register(data):
        return services.version_register(
            actor=ui_actor(request), model=model, version=data["version"], source_uri=data["source_uri"],
            metadata=data["metadata"],
        )

    result, ok = submit(form, register)
    if ok:
        return _registered(request, model, *result)
    return _version_page(request, model, s3_form=form, status=failure_status(form))
