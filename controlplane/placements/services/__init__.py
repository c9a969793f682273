"""Placement services, split by seam:

- ``commands``: creating, retrying and removing placements (what people ask for);
- ``execution``: loads and unloads on Triton, run by workers;
- ``reconciler``: the periodic comparison with every server (its decision: ``placements.reconcile``);
- ``live``: the last sample of what each server says, taken by a periodic task;
- ``state``: the audited compare-and-set changes of a target's state that all of them share.

Import from here: ``from controlplane.placements.services import placement_create``.
"""
from controlplane.placements.services.commands import (
    devices_on_server,
    placement_create,
    placement_remove,
    placement_retry,
)
from controlplane.placements.services.execution import placement_apply, placement_unload
from controlplane.placements.services.live import (
    LiveTarget,
    placement_live,
    placements_sample,
)
from controlplane.placements.services.reconciler import reconcile_fleet, reconcile_soon
from controlplane.placements.services.state import (
    Claim,
    Outcome,
    claim,
    close_if_empty,
    record_load,
    record_removed,
    retire,
    targets,
)

# The names other apps (the fleet's drain) and older callers use.
_targets = targets
_claim = claim
_close_if_empty = close_if_empty
_retire = retire
_record_load = record_load
_record_removed = record_removed

__all__ = [
    "Claim", "LiveTarget", "Outcome", "claim", "close_if_empty", "devices_on_server", "placement_apply",
    "placement_create", "placement_live", "placement_remove", "placement_retry", "placement_unload",
    "placements_sample", "reconcile_fleet", "reconcile_soon", "record_load", "record_removed", "retire", "targets",
]
