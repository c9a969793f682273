from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from controlplane.common.ui import is_htmx
from controlplane.fleet import selectors
from controlplane.fleet.filters import ServerFilterSet

SERVERS_PER_PAGE = 50  # rendering is ~0.3 ms a row; 50 keeps the page well under 100 ms


@login_required
def fleet(request):
    filterset = ServerFilterSet(request.GET, queryset=selectors.servers_list())
    page = Paginator(filterset.qs, SERVERS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"filter": filterset, "page": page, "servers": page, "summary": selectors.fleet_summary()}
    template = "fleet/_servers.html" if is_htmx(request) else "fleet/fleet.html"
    return render(request, template, context)
