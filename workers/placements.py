import logging

from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.placements import services
from controlplane.placements.models import Placement
from workers.base import TryLater, task

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
    """Unload a removed placement's targets. A missing placement is a quiet no-op. A server that
    refused the unload or is still unloading gets it again, with backoff (unloading twice is harmless)."""
    if not Placement.objects.filter(pk=placement_id).exists():
        return None
    counts = services.placement_unload(placement_id=placement_id, actor=Actor.system(Source.WORKER))
    log.info("unloaded placement %s: %s", placement_id, counts)
    if counts.get("unloading"):
        raise TryLater(f"placement {placement_id}: {counts['unloading']} server(s) still unloading")
    return counts


@task("placements.reconcile_fleet")
def reconcile_fleet():
    """Periodic: compare desired placements with every server and repair drift, as the system."""
    report = services.reconcile_fleet(actor=Actor.system())
    log.info("reconciled placements: %s", {k: len(v) if isinstance(v, list) else v for k, v in report.items()})
    return report


@task("placements.sample_live", max_retries=0)
def sample_live():
    """Periodic: sample what each server says about each placement target, for the live view.
    Not retried: the next tick takes a fresher sample."""
    return services.placements_sample()
