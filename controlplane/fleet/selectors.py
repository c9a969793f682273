from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404

from controlplane.fleet.models import Pool, Server


def servers_list() -> QuerySet[Server]:
    """Servers are shared: every signed-in user may see the fleet."""
    return Server.objects.select_related("pool")


def server_get(pk) -> Server:
    return get_object_or_404(servers_list(), pk=pk)


def pools_list() -> QuerySet[Pool]:
    return Pool.objects.annotate(server_count=Count("servers")).order_by("name")


def fleet_summary() -> dict[str, int]:
    counts = dict(Server.objects.values_list("status").annotate(n=Count("id")).order_by())
    counts["total"] = sum(counts.values())
    return counts
