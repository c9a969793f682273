"""Fleet pages: the server list, a server's own page, and the platform admins' forms to register,
edit and remove servers and pools. Each form feeds the fleet service the API calls."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from controlplane.accounts.access import require_platform_admin
from controlplane.accounts.selectors import is_platform_admin
from controlplane.common.forms import flash_form_errors, submit
from controlplane.common.ui import is_htmx, ui_actor
from controlplane.fleet import selectors, services
from controlplane.fleet.filters import ServerFilterSet
from controlplane.fleet.forms import PoolForm, PoolRemoveForm, ServerForm, ServerRemoveForm

SERVERS_PER_PAGE = 50  # rendering is ~0.3 ms a row; 50 keeps the page well under 100 ms


@login_required
def fleet(request):
    filterset = ServerFilterSet(request.GET, queryset=selectors.servers_list())
    page = Paginator(filterset.qs, SERVERS_PER_PAGE).get_page(request.GET.get("page"))
    selectors.loaded_models_visible(request.user, page)
    context = {"filter": filterset, "page": page, "servers": page, "summary": selectors.fleet_summary()}
    if is_htmx(request):
        return render(request, "fleet/_servers.html", context)
    context |= {"pools": selectors.pools_list(), "is_admin": is_platform_admin(request.user)}
    return render(request, "fleet/fleet.html", context)


@login_required
def server_detail(request, pk, remove_form=None):
    server = selectors.server_get(pk)
    selectors.loaded_models_visible(request.user, [server])
    context = {
        "server": server,
        "targets": selectors.server_placement_targets(request.user, server)[:selectors.SERVER_PAGE_TARGETS],
        "history": selectors.server_history(request.user, server)[:selectors.SERVER_PAGE_HISTORY],
        "is_admin": is_platform_admin(request.user),
        "remove_form": remove_form or ServerRemoveForm(),
    }
    return render(request, "fleet/server_detail.html", context)


@login_required
def server_register(request):
    require_platform_admin(request.user)
    form = ServerForm(request.POST or None)
    if request.method == "POST":
        server, ok = submit(form, lambda data: services.server_register(actor=ui_actor(request), **data))
        if ok:
            messages.success(request, f"Server {server.name} registered; a first probe is queued.")
            return redirect("server-detail", pk=server.pk)
    return render(request, "fleet/server_form.html", {"form": form, "server": None})


@login_required
def server_edit(request, pk):
    require_platform_admin(request.user)
    server = selectors.server_get(pk)
    form = ServerForm.for_server(server, request.POST or None)
    if request.method == "POST":
        updated, ok = submit(form, lambda data: services.server_update(actor=ui_actor(request), server=server, **data))
        if ok:
            messages.success(request, f"Server {server.name} saved." if updated else "Nothing changed.")
            return redirect("server-detail", pk=server.pk)
        server.refresh_from_db()  # the failed edit was applied to this instance only
    return render(request, "fleet/server_form.html", {"form": form, "server": server})


@login_required
@require_POST
def server_remove(request, pk):
    require_platform_admin(request.user)
    server = selectors.server_get(pk)
    form = ServerRemoveForm(request.POST)
    name = server.name
    draining, ok = submit(form, lambda data: services.server_remove(actor=ui_actor(request), server=server, drain=data["drain"]))
    if not ok:
        return server_detail(request, pk, remove_form=form)
    if draining is None:
        messages.success(request, f"Server {name} removed.")
        return redirect("fleet")
    messages.success(request, f"Server {name} is draining: its placements are being unloaded, then it is removed.")
    return redirect("server-detail", pk=pk)


@login_required
def pool_create(request):
    require_platform_admin(request.user)
    form = PoolForm(request.POST or None)
    if request.method == "POST":
        pool, ok = submit(form, lambda data: services.pool_create(actor=ui_actor(request), **data))
        if ok:
            messages.success(request, f"Pool {pool.name} created.")
            return redirect(reverse("fleet") + "#pools")
    return render(request, "fleet/pool_form.html", {"form": form, "pool": None})


@login_required
def pool_edit(request, name):
    require_platform_admin(request.user)
    pool = selectors.pool_get(name)
    form = PoolForm.for_pool(pool, request.POST or None)
    if request.method == "POST":
        updated, ok = submit(form, lambda data: services.pool_update(actor=ui_actor(request), pool=pool, **data))
        if ok:
            messages.success(request, f"Pool {pool.name} saved." if updated else "Nothing changed.")
            return redirect(reverse("fleet") + "#pools")
        pool.refresh_from_db()
    return render(request, "fleet/pool_form.html", {"form": form, "pool": pool})


@login_required
@require_POST
def pool_remove(request, name):
    require_platform_admin(request.user)
    pool = selectors.pool_get(name)
    form = PoolRemoveForm(request.POST)
    _, ok = submit(form, lambda data: services.pool_delete(actor=ui_actor(request), pool=pool))
    if ok:
        messages.success(request, f"Pool {name} removed.")
    else:  # the form has no fields: the refusal (servers still in the pool) is a page message
        flash_form_errors(request, form)
    return redirect(reverse("fleet") + "#pools")
