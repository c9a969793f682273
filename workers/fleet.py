import logging

from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.fleet import services
from controlplane.fleet.models import Server
from workers.base import task

log = logging.getLogger(__name__)


@task("fleet.probe_fleet")
def probe_fleet():
    """Periodic: record health and the repository index of every server."""
    counts = services.fleet_probe(actor=Actor.system(Source.SCHEDULE))
    log.info("probed fleet: %s", counts)
    removed = services.fleet_drains_finish(actor=Actor.system(Source.SCHEDULE))
    if removed:
        log.info("removed drained servers: %s", removed)
    return counts


@task("fleet.probe_server")
def probe_server(server_id: int):
    """Probe one server now, for example right after it is registered. A missing server is a no-op."""
    if not Server.objects.filter(pk=server_id).exists():
        return None
    return services.fleet_probe(server_ids=[server_id], actor=Actor.system(Source.WORKER))


@task("fleet.drain_server")
def drain_server(server_id: int):
    """Unload a draining server's placements, then remove it. A missing server is a no-op."""
    return services.server_drain(server_id=server_id, actor=Actor.system(Source.WORKER))
