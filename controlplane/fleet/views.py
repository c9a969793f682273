from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from controlplane.fleet import selectors
from controlplane.fleet.filters import ServerFilterSet


@login_required
def fleet(request):
    filterset = ServerFilterSet(request.GET, queryset=selectors.servers_list())
    context = {"filter": filterset, "servers": filterset.qs[:500], "summary": selectors.fleet_summary()}
    template = "fleet/_servers.html" if request.headers.get("HX-Request") else "fleet/fleet.html"
    return render(request, template, context)
