"""Placement settings, read from Django settings with defaults (the lead adds the env vars).

Read at call time, so tests and operators can change them without a restart of the module.
"""
from django.conf import settings


def load_timeout() -> float:
    """Seconds a load may take, including the wait for every wanted version to be READY."""
    return float(getattr(settings, "SWITCHYARD_PLACEMENT_LOAD_TIMEOUT_SECONDS", 300.0))


def stuck_seconds() -> float:
    """A model LOADING or UNLOADING on Triton for longer than this is marked stuck."""
    return float(getattr(settings, "SWITCHYARD_PLACEMENT_STUCK_SECONDS", 600.0))


def unload_wait() -> float:
    """How long an unload waits for the model to leave UNLOADING before the reconciler takes over."""
    return float(getattr(settings, "SWITCHYARD_PLACEMENT_UNLOAD_WAIT_SECONDS", 15.0))


def pending_grace() -> float:
    """A target still pending after this long lost its apply task (broker down?): the reconciler applies it."""
    return float(getattr(settings, "SWITCHYARD_PLACEMENT_PENDING_GRACE_SECONDS", 60.0))


def concurrency() -> int:
    return int(getattr(settings, "SWITCHYARD_PLACEMENT_CONCURRENCY", getattr(settings, "SWITCHYARD_PROBE_CONCURRENCY", 32)))


def call_timeout() -> float:
    """Index, config, readiness and stats calls."""
    return float(getattr(settings, "SWITCHYARD_TRITON_TIMEOUT_SECONDS", 5.0))


def live_timeout() -> float:
    """The model page's live fragment must come back quickly even when a server hangs."""
    return min(call_timeout(), 2.0)


LIVE_WINDOW_SECONDS = 1.0  # the first live view samples statistics twice, this far apart
RECONCILE_RUNS_KEPT = 500
