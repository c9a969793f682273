"""Executing loads and unloads on Triton, in parallel across servers, outside any transaction.

A worker claims targets (``state.claim``), talks to each server, then records each result with a
compare-and-set, so a second run, or a late answer, changes nothing.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import timedelta

from django import db
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.common.fanout import fan_out
from controlplane.fleet.triton_client import (
    TritonClient,
    TritonError,
    TritonRequestError,
    TritonUnavailable,
)
from controlplane.placements import conf, drift
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.placements.services.state import (
    Claim,
    Outcome,
    claim,
    record_load,
    record_removed,
    targets,
    unload_claim,
)


def parallel(fn, items: list) -> list:
    """Placement I/O across servers, bounded by SWITCHYARD_PLACEMENT_CONCURRENCY."""
    return fan_out(fn, items, concurrency=conf.concurrency(), name="placement")


def _reasons(client: TritonClient, name: str, versions: Iterable[int]) -> str:
    """What the repository index says about a model after a failed load (per-version reasons)."""
    try:
        rows = [r for r in client.index() if r["name"] == name]
    except TritonError:
        return ""
    notes = []
    for row in rows:
        reason = (row.get("reason") or "").strip()
        if row.get("state") == drift.READY:
            notes.append(f"v{row['version']} is still READY from an earlier load" + (f" ({reason})" if reason else ""))
        elif reason and reason != "unloaded" and drift._version(row) in set(versions):
            notes.append(f"v{row['version']} {row.get('state')}: {reason}")
    return "\n".join(notes)


def _load_one(claim: Claim) -> Outcome:
    """Load on one server and wait until every wanted version is READY (per model: the server's
    own readiness flips to false while any other model unloads or after any failed load)."""
    timeout = conf.load_timeout()
    deadline = time.monotonic() + timeout
    client = TritonClient(claim.url, timeout=conf.call_timeout(), load_timeout=timeout)
    try:
        seconds = client.load(claim.name, config=claim.config)
    except TritonRequestError as exc:
        notes = _reasons(client, claim.name, claim.versions)
        text = exc.message.strip()
        if notes and notes not in text:
            text = f"{text}\n{notes}"
        return Outcome(TargetState.FAILED, error=text)
    except TritonUnavailable as exc:
        # Triton keeps loading when the caller gives up; then the reconciler finishes the story.
        try:
            rows = [r for r in client.index() if r["name"] == claim.name]
        except TritonError:
            rows = []
        if drift.versions_in(rows, drift.LOADING):
            return Outcome(TargetState.LOADING, error=f"Still LOADING after {timeout:g} s; the reconciler marks it ready or stuck.")
        return Outcome(TargetState.FAILED, error=str(exc))
    except TritonError as exc:
        return Outcome(TargetState.FAILED, error=str(exc))
    pending = list(claim.versions)
    while True:
        try:
            pending = [v for v in pending if not client.model_ready(claim.name, v)]
        except TritonError as exc:
            return Outcome(TargetState.FAILED, seconds, f"Loaded, but readiness could not be read: {exc}")
        if not pending:
            return Outcome(TargetState.READY, seconds)
        if time.monotonic() >= deadline:
            notes = _reasons(client, claim.name, pending)
            names = ", ".join(f"v{v}" for v in pending)
            return Outcome(TargetState.FAILED, seconds, f"Loaded, but {names} not READY within {timeout:g} s.\n{notes}".strip())
        time.sleep(0.2)  # a worker polling Triton, never a web request


@contextmanager
def _leases_renewed(claims: list[Claim]):
    """Renew the claims' leases while their loads run, so that the reconciler can tell a slow load
    (lease renewed) from one whose worker died (lease run out) without waiting for the stuck timeout.
    One UPDATE every LEASE_S / 3, whatever the number of servers."""
    if not claims:
        yield
        return
    stop = threading.Event()
    ids = [c.target_id for c in claims]

    def renew() -> None:
        try:
            while not stop.wait(conf.LEASE_S / 3):
                PlacementTarget.objects.filter(pk__in=ids, state=TargetState.LOADING).update(
                    lease_until=timezone.now() + timedelta(seconds=conf.LEASE_S))
        finally:
            db.connection.close()  # this thread's own connection

    thread = threading.Thread(target=renew, name="placement-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_loads(claims: list[Claim], actor: Actor) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    with _leases_renewed(claims):
        outcomes = parallel(_load_one, claims)
    # One transaction for the whole batch (each record is still its own compare-and-set, audited):
    # one commit and one routing-table build, not one per server (500 of each cost a rollout to
    # 500 servers ~9 s).
    with transaction.atomic():
        for one, outcome in zip(claims, outcomes):
            state = record_load(one, outcome, actor)
            counts[str(state or "stale")] += 1
    return dict(counts)


def placement_apply(*, placement_id: int, actor: Actor | None = None) -> dict[str, int]:
    """Load every pending target of a placement, in parallel, and record each result.

    Also takes over targets left LOADING past the load timeout by a worker that died. Returns a
    count per resulting state; an empty dict when there was nothing to do.
    """
    actor = actor or Actor.system(Source.WORKER)
    placement = Placement.objects.filter(pk=placement_id, removed_at__isnull=True).first()
    if placement is None:
        return {}
    stale = timezone.now() - timedelta(seconds=conf.load_timeout() + 30)
    candidates = targets(placement_id=placement_id).filter(
        Q(state=TargetState.PENDING) | Q(state=TargetState.LOADING, state_changed_at__lt=stale)
    ).exclude(server=None)
    with transaction.atomic():  # one commit for the batch's claims
        claims = [c for t in candidates if (c := claim(t, to=TargetState.LOADING, actor=actor, action="placement.target.load"))]
    return run_loads(claims, actor)


def _unload_one(claim: Claim) -> Outcome:
    client = TritonClient(claim.url, timeout=conf.call_timeout(), load_timeout=conf.call_timeout() * 6)
    try:
        client.unload(claim.name)
    except TritonUnavailable as exc:
        # In explicit mode a restarted Triton has nothing loaded, so the GPUs are free either way;
        # if this server comes back still serving it, the reconciler reports it as extra.
        return Outcome(TargetState.REMOVED, error=f"Server unreachable, released anyway: {exc}")
    except TritonError as exc:
        return Outcome(TargetState.UNLOADING, error=str(exc))
    deadline = time.monotonic() + conf.unload_wait()
    while True:
        try:
            rows = [r for r in client.index() if r["name"] == claim.name]
        except TritonError as exc:
            return Outcome(TargetState.UNLOADING, error=f"Unload sent; index unreadable: {exc}")
        if not drift.is_loaded(rows):
            return Outcome(TargetState.REMOVED)
        if time.monotonic() >= deadline:
            return Outcome(TargetState.UNLOADING, error=f"Still {drift._states(rows)} after {conf.unload_wait():g} s.")
        time.sleep(0.2)


def run_unloads(claims: list[Claim], actor: Actor) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for one, outcome in zip(claims, parallel(_unload_one, claims)):
        if outcome.state == TargetState.REMOVED:
            done = record_removed(one.target_id, one.attempt, actor, note=outcome.error, reason=one.reason)
            counts["removed" if done else "stale"] += 1
        else:
            PlacementTarget.objects.filter(pk=one.target_id, attempt=one.attempt).update(error=outcome.error)
            counts["unloading"] += 1
    return dict(counts)


def placement_unload(*, placement_id: int, actor: Actor | None = None) -> dict[str, int]:
    """Unload every UNLOADING target of a placement, in parallel; REMOVED once Triton confirms."""
    actor = actor or Actor.system(Source.WORKER)
    found = targets(placement_id=placement_id, state=TargetState.UNLOADING).exclude(server=None)
    return run_unloads([unload_claim(t) for t in found], actor)
