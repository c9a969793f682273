"""Placement settings (see controlplane/settings.py and the README for the variables).

Read at call time, so tests and operators can change them without a restart of the module.
"""
from django.conf import settings


def load_timeout() -> float:
    """Seconds a load may take, including the wait for every wanted version to be READY."""
    return float(settings.SWITCHYARD_PLACEMENT_LOAD_TIMEOUT_SECONDS)


def stuck_seconds() -> float:
    """A model LOADING or UNLOADING on Triton for longer than this is marked stuck."""
    return float(settings.SWITCHYARD_PLACEMENT_STUCK_SECONDS)


def unload_wait() -> float:
    """How long an unload waits for the model to leave UNLOADING before the reconciler takes over."""
    return float(settings.SWITCHYARD_PLACEMENT_UNLOAD_WAIT_SECONDS)


def pending_grace() -> float:
    """A target still pending after this long lost its apply task (broker down?): the reconciler applies it."""
    return float(settings.SWITCHYARD_PLACEMENT_PENDING_GRACE_SECONDS)


def concurrency() -> int:
    return settings.SWITCHYARD_PLACEMENT_CONCURRENCY


def call_timeout() -> float:
    """Index, config, readiness and stats calls."""
    return float(settings.SWITCHYARD_TRITON_TIMEOUT_SECONDS)


def live_timeout() -> float:
    """The live sampler's calls: short, so one hung server does not hold up the samples of the rest."""
    return min(call_timeout(), 2.0)


RECONCILE_RUNS_KEPT = 500
LEASE_S = 15.0  # a LOADING claim's lease; its worker renews it every LEASE_S / 3 while it loads
