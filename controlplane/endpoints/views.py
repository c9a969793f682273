"""Endpoint pages: the list (with the gateway replicas), a new endpoint, and an endpoint's own page
with its edit form and Delete. Each form feeds the service the API calls; a refusal re-renders the
page with the error next to its field and the API's status."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlplane.accounts.models import Role
from controlplane.accounts.selectors import has_role, teams_with_role
from controlplane.common.forms import failure_status, submit
from controlplane.common.ui import ui_actor
from controlplane.endpoints import selectors, services
from controlplane.endpoints.filters import EndpointFilterSet
from controlplane.endpoints.forms import EndpointDeleteForm, EndpointForm

ENDPOINTS_PER_PAGE = 50


@login_required
@require_GET
def endpoint_list(request):
    filterset = EndpointFilterSet(request.GET, queryset=selectors.endpoints_visible(request.user))
    page = Paginator(filterset.qs, ENDPOINTS_PER_PAGE).get_page(request.GET.get("page"))
    statuses = selectors.endpoint_statuses(page)
    table_version, replicas = selectors.gateway_replicas()
    context = {
        "filter": filterset, "page": page, "rows": [(e, statuses[e.pk]) for e in page],
        "can_create": teams_with_role(request.user, Role.DEPLOYER).exists(),
        "table_version": table_version, "replicas": replicas,
    }
    return render(request, "endpoints/endpoint_list.html", context)


def _with_routed_errors(form, call):
    def action(data):
        try:
            return call(form.service_args())
        except ValidationError as exc:
            raise form.route_errors(exc) from None
    return action


@login_required
def endpoint_create(request):
    form = EndpointForm(request.POST if request.method == "POST" else None, user=request.user)
    status = 200 if form.teams else 403  # no team to create into
    if request.method == "POST":
        endpoint, ok = submit(form, _with_routed_errors(
            form, lambda args: services.endpoint_create(actor=ui_actor(request), **args)))
        if ok:
            messages.success(request, f"Endpoint {endpoint.public_name} created.")
            return redirect("endpoint-detail", pk=endpoint.pk)
        status = failure_status(form)
    return render(request, "endpoints/endpoint_form.html", {"form": form}, status=status)


def _detail(request, endpoint, *, form=None, delete_form=None, status=200):
    can_deploy = has_role(request.user, endpoint.team, Role.DEPLOYER)
    context = {
        "endpoint": endpoint,
        "status": selectors.endpoint_status(endpoint),
        "history": selectors.endpoint_history(endpoint),
        "can_deploy": can_deploy,
        "form": form if form is not None else (EndpointForm(user=request.user, endpoint=endpoint) if can_deploy else None),
        "delete_form": delete_form or EndpointDeleteForm(),
    }
    return render(request, "endpoints/endpoint_detail.html", context, status=status)


@login_required
@require_GET
def endpoint_detail(request, pk):
    return _detail(request, selectors.endpoint_get(request.user, pk))


@login_required
@require_POST
def endpoint_edit(request, pk):
    endpoint = selectors.endpoint_get(request.user, pk)
    form = EndpointForm(request.POST, user=request.user, endpoint=endpoint)
    changed, ok = submit(form, _with_routed_errors(
        form, lambda args: services.endpoint_update(actor=ui_actor(request), endpoint=endpoint, **args)))
    if not ok:
        return _detail(request, selectors.endpoint_get(request.user, pk), form=form, status=failure_status(form))
    if changed:
        messages.success(request, f"Endpoint {endpoint.public_name} saved.")
    else:
        messages.info(request, "Nothing changed.")
    return redirect("endpoint-detail", pk=endpoint.pk)


@login_required
@require_POST
def endpoint_delete(request, pk):
    endpoint = selectors.endpoint_get(request.user, pk)
    form = EndpointDeleteForm(request.POST)
    name = endpoint.public_name
    _, ok = submit(form, lambda data: services.endpoint_delete(actor=ui_actor(request), endpoint=endpoint))
    if not ok:
        return _detail(request, endpoint, delete_form=form, status=failure_status(form))
    messages.success(request, f"Endpoint {name} deleted.")
    return redirect("endpoint-list")
