import logging

from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.placements import services
from controlplane.placements.models import Placement
from workers.base import task

log = logging.getLogger(__name__)


@task("placements.apply_placement")
def apply_placement(placement_id: int):
    """Load a placement's pending targets. A missing or removed placement is a quiet no-op."""
    if not Placement.objects.filter(pk=placement_id).exists():
        return None
    counts = services.placement_apply(placement_id=placement_id, actor=Actor.system(Source.WORKER))
    log.info("applied placement %s: %s", placement_id, counts)
    return counts


@task("placements.unload_placement")
def unload_placement(placement_id: int):
    """Unload a removed placement's targets. A missing placement is a quiet no-op."""
    if not Placement.objects.filter(pk=placement_id).exists():
        return None
    counts = services.placement_unload(placement_id=placement_id, actor=Actor.system(Source.WORKER))
    log.info("unloaded placement %s: %s", placement_id, counts)
    return counts


@task("placements.reconcile_fleet")
def reconcile_fleet():
    """Periodic: compare desired placements with every server and repair drift, as the system."""
    report = services.reconcile_fleet(actor=Actor.system())
    log.info("reconciled placements: %s", {k: len(v) if isinstance(v, list) else v for k, v in report.items()})
    return report
