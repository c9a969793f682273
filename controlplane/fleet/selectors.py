from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404

from controlplane.accounts.selectors import is_platform_admin, visible_teams
from controlplane.audit.models import AuditEvent
from controlplane.audit.selectors import audit_events_visible
from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import ACTIVE_STATES, PlacementTarget


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


SERVER_PAGE_TARGETS = 200  # the server page lists at most this many placement targets
SERVER_PAGE_HISTORY = 20


def server_placement_targets(user, server: Server) -> QuerySet[PlacementTarget]:
    """Active placement targets on ``server`` whose model belongs to a team the user may see:
    servers are shared, but which team placed what on them is not."""
    return (
        PlacementTarget.objects.filter(server=server, state__in=ACTIVE_STATES, model__team__in=visible_teams(user))
        .select_related("placement", "model__team")
        .order_by("model__team__slug", "model__name", "pk")
    )


def server_history(user, server: Server) -> QuerySet[AuditEvent]:
    """The server's own audit events, as far as the audit log lets this user see them."""
    return audit_events_visible(user).filter(object_type=Server._meta.label_lower, object_id=str(server.pk)).order_by("-id")


def pool_get(name: str) -> Pool:
    return get_object_or_404(Pool, name=name)


def loaded_models_visible(user, servers) -> None:
    """Set ``visible_models`` on each server: what its last probe saw loaded, limited for a team
    user to their teams' models (Triton names are ``<team>.<model>``), so that the shared fleet
    does not show which models other teams run. One query, whatever the number of servers."""
    if is_platform_admin(user):
        for server in servers:
            server.visible_models = server.loaded_models
        return
    prefixes = tuple(f"{slug}." for slug in visible_teams(user).values_list("slug", flat=True))
    for server in servers:
        server.visible_models = [m for m in server.loaded_models if prefixes and str(m.get("name", "")).startswith(prefixes)]
