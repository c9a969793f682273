"""Deployment services, split by seam (as placements' are):

- ``commands``: what people ask for: plan, create, and the actions (promote, roll back, ...);
- ``transitions``: the one audited compare-and-set that changes a deployment's state;
- ``engine``: what a worker does in each state, and the tick (schedules, deadlines, resumption);
- ``capacity``: GPU devices and memory headroom (reads Prometheus);
- ``endpoint_moves``: the label (or pinned variants) moving to green, and back.

Import from here: ``from controlplane.deployments.services import deployment_create``.
"""
from controlplane.deployments.services.commands import (
    PERSON_EVENTS,
    Resolved,
    deployment_act,
    deployment_create,
    deployment_guard_tripped,
    deployment_plan,
    release_surge,
    reserve_surge,
)
from controlplane.deployments.services.endpoint_moves import promotion_write, rollback_write
from controlplane.deployments.services.engine import deployment_advance, deployments_tick
from controlplane.deployments.services.transitions import apply_event, holder_of

__all__ = [
    "PERSON_EVENTS", "Resolved", "reserve_surge", "apply_event", "deployment_act", "deployment_advance", "deployment_create", "deployment_guard_tripped",
    "deployment_plan", "deployments_tick", "holder_of", "promotion_write", "release_surge", "rollback_write",
]
