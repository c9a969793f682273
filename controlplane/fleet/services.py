"""Writes to the fleet inventory, and the prober that records what each Triton server reports.

Triton I/O happens outside transactions; only the recording of results touches the database.
"""
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from controlplane.accounts.access import authorize_platform_admin
from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.audit.services import audit_record, create_audited, snapshot, update_audited
from controlplane.common.errors import Conflict
from controlplane.common.fanout import fan_out
from controlplane.common.tasks import enqueue
from controlplane.endpoints.publication import request_publish
from controlplane.fleet.models import Pool, Server, ServerStatus
from controlplane.fleet.triton_client import TritonClient, TritonError
from controlplane.placements.models import ACTIVE_STATES, PlacementTarget, TargetState
from controlplane.placements.services import claim as claim_target
from controlplane.placements.services import close_if_empty, placement_unload
from controlplane.placements.services import targets as placement_targets

log = logging.getLogger(__name__)

POOL_FIELDS = ["name", "description"]
SERVER_FIELDS = ["name", "pool", "http_url", "grpc_url", "metrics_url", "gpu_type", "gpu_count", "labels"]
SERVER_EDITABLE = set(SERVER_FIELDS)
NAMES_SHOWN = 5  # a refusal names this many blockers, then says "and more"


def pool_create(*, actor: Actor, name: str, description: str = "") -> Pool:
    authorize_platform_admin(actor)
    pool = Pool(name=name, description=description)
    pool.full_clean(validate_unique=False)
    duplicate = Conflict("name", f"A pool named {name} already exists.")
    return create_audited(pool, actor=actor, action="pool.create", fields=POOL_FIELDS, duplicate=duplicate)


def pool_update(*, actor: Actor, pool: Pool, **changes) -> bool:
    """Apply ``changes`` to ``pool`` in place; returns whether anything differed (else nothing is written)."""
    authorize_platform_admin(actor)
    unknown = set(changes) - set(POOL_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    duplicate = Conflict("name", f"A pool named {changes.get('name')} already exists.")
    return update_audited(pool, actor=actor, action="pool.update", changes=changes, fields=POOL_FIELDS, duplicate=duplicate)


def pool_delete(*, actor: Actor, pool: Pool) -> None:
    authorize_platform_admin(actor)
    with transaction.atomic():
        Pool.objects.select_for_update().filter(pk=pool.pk).first()  # no server registers into it meanwhile
        names = list(pool.servers.order_by("name").values_list("name", flat=True)[:NAMES_SHOWN + 1])
        if names:
            raise Conflict("pool", f"Pool {pool.name} still has servers ({_some(names)}); move or remove them first.")
        audit_record(actor=actor, action="pool.delete", obj=pool, before=snapshot(pool, POOL_FIELDS))
        pool.delete()


def server_register(*, actor: Actor, name: str, pool: Pool, http_url: str, **fields) -> Server:
    authorize_platform_admin(actor)
    server = Server(name=name, pool=pool, http_url=http_url, **fields)
    server.full_clean(validate_unique=False)
    duplicate = Conflict("name", f"A server named {name} already exists.")
    create_audited(server, actor=actor, action="server.register", fields=SERVER_FIELDS, duplicate=duplicate)
    enqueue("fleet.probe_server", server.pk)  # a first probe now; the periodic prober catches up
    return server


def server_update(*, actor: Actor, server: Server, **changes) -> bool:
    """Apply ``changes`` to ``server`` in place; returns whether anything differed (else nothing is written)."""
    authorize_platform_admin(actor)
    unknown = set(changes) - SERVER_EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    duplicate = Conflict("name", f"A server named {changes.get('name')} already exists.")
    # Only the changed fields are saved: never stale probe fields or draining_since.
    changed = update_audited(server, actor=actor, action="server.update", changes=changes, fields=SERVER_FIELDS,
                             duplicate=duplicate)
    if changed:
        request_publish()  # the routing table carries each server's name and URL
    return changed


def server_remove(*, actor: Actor, server: Server, drain: bool = False) -> Server | None:
    """Deregister a server. Returns None when it is gone, or the server when it is draining.

    A server that still holds active placements is refused unless ``drain``: then each of its
    placement targets goes to UNLOADING (audited on the target, for its team) and the drain task
    unloads them; the server is deleted once none is left (``server_drain_finish``). Nothing here
    waits on Triton.
    """
    authorize_platform_admin(actor)
    with transaction.atomic():
        locked = Server.objects.select_for_update().select_related("pool").get(pk=server.pk)
        active = list(_active_targets(locked))
        if not active:
            audit_record(actor=actor, action="server.remove", obj=locked, before=snapshot(locked, SERVER_FIELDS))
            locked.delete()
            return None
        if not drain:
            held = [f"{t.model.team.slug}/{t.model.name} (placement {t.placement_id})" for t in active[:NAMES_SHOWN + 1]]
            raise Conflict(
                "drain",
                f"Server {locked.name} still holds {len(active)} active placement target(s): {_some(held)}. "
                "Remove those placements, or drain the server: its models are unloaded, then it is removed.",
            )
        if locked.draining_since is None:
            locked.draining_since = timezone.now()
            locked.save(update_fields=["draining_since"])
            audit_record(
                actor=actor, action="server.drain", obj=locked, before={"draining_since": None},
                after={"draining_since": locked.draining_since.isoformat(),
                       "placements": sorted({t.placement_id for t in active})},
            )
        _unload_targets(actor, locked, active)
        enqueue("fleet.drain_server", locked.pk)
    return locked


def server_drain_finish(*, server_id: int, actor: Actor | None = None) -> bool:
    """Delete a draining server once none of its placement targets is active; True if deleted.

    Targets placed on it while it drained are sent to unload too. Placements left with no
    active target anywhere are closed. Safe to run twice: a deleted server is a no-op.
    """
    actor = actor or Actor.system(Source.WORKER)
    with transaction.atomic():
        server = Server.objects.select_for_update().filter(pk=server_id, draining_since__isnull=False).first()
        if server is None:
            return False
        active = list(_active_targets(server))
        if active:
            if _unload_targets(actor, server, active):
                enqueue("fleet.drain_server", server_id)
            return False
        placement_ids = list(
            server.placement_targets.filter(placement__removed_at__isnull=True).values_list("placement_id", flat=True).distinct()
        )
        audit_record(actor=actor, action="server.remove", obj=server, before=snapshot(server, SERVER_FIELDS),
                     reason="drained: its placements were unloaded")
        name = server.name
        server.delete()
        for placement_id in sorted(placement_ids):
            close_if_empty(actor, placement_id, reason=f"its server {name} was drained")
    return True


def server_drain(*, server_id: int, actor: Actor | None = None) -> bool:
    """The drain task's work: unload the server's UNLOADING targets (Triton I/O, no transaction
    held), then delete the server if nothing is left on it. True if the server is gone."""
    actor = actor or Actor.system(Source.WORKER)
    if not Server.objects.filter(pk=server_id, draining_since__isnull=False).exists():
        return False
    placement_ids = (
        PlacementTarget.objects.filter(server_id=server_id, state=TargetState.UNLOADING)
        .values_list("placement_id", flat=True).distinct()
    )
    for placement_id in sorted(placement_ids):
        placement_unload(placement_id=placement_id, actor=actor)
    return server_drain_finish(server_id=server_id, actor=actor)


def fleet_drains_finish(*, actor: Actor | None = None) -> list[int]:
    """Finish every drain whose unloads are done (the periodic catch-up for lost drain tasks)."""
    ids = list(Server.objects.filter(draining_since__isnull=False).values_list("pk", flat=True))
    return [pk for pk in ids if server_drain_finish(server_id=pk, actor=actor)]


def _active_targets(server: Server):
    return placement_targets(server=server, state__in=ACTIVE_STATES).order_by("model__team__slug", "model__name", "pk")


def _unload_targets(actor: Actor, server: Server, targets) -> int:
    """Claim each target not already unloading for an unload (compare-and-set, audited)."""
    reason = f"server {server.name} is draining"
    claimed = 0
    for target in targets:
        if target.state == TargetState.UNLOADING:
            continue  # already on its way out; the drain task or the reconciler finishes it
        if claim_target(target, to=TargetState.UNLOADING, actor=actor, action="placement.target.unload", reason=reason):
            claimed += 1
    return claimed


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (" and more" if len(names) > NAMES_SHOWN else "")


@dataclass
class ProbeResult:
    """What one server reported. Built without touching the database."""

    status: str
    is_live: bool | None = None
    is_ready: bool | None = None
    triton_version: str = ""
    extensions: list[str] = field(default_factory=list)
    repository_index: list[dict] = field(default_factory=list)
    error: str = ""


def probe(http_url: str, *, timeout: float) -> ProbeResult:
    """Ask one Triton server for its health, metadata and repository index."""
    try:
        with TritonClient(http_url, timeout=timeout) as client:
            live = client.live()
            ready = client.ready() if live else False
            meta = client.metadata()
            index = client.index()
    except TritonError as exc:
        return ProbeResult(status=ServerStatus.DOWN, error=str(exc))
    status = ServerStatus.UP if live and ready else ServerStatus.NOT_READY if live else ServerStatus.DOWN
    return ProbeResult(
        status=status,
        is_live=live,
        is_ready=ready,
        triton_version=str(meta.get("version", "")),
        extensions=list(meta.get("extensions", [])),
        repository_index=index,
        error="" if status == ServerStatus.UP else "Server is live but not ready." if live else "Server is not live.",
    )


def server_record_probe(*, server: Server, result: ProbeResult, actor: Actor | None = None) -> Server:
    """Store a probe result. A change of status (such as up to down) is an audited event."""
    actor = actor or Actor.system(Source.WORKER)
    now = timezone.now()
    with transaction.atomic():
        locked = Server.objects.select_for_update().get(pk=server.pk)
        previous = locked.status
        locked.status = result.status
        locked.is_live = result.is_live
        locked.is_ready = result.is_ready
        locked.last_probe_at = now
        locked.last_error = result.error
        if result.is_live:
            locked.last_seen_at = now
            locked.triton_version = result.triton_version
            locked.extensions = result.extensions
            locked.repository_index = result.repository_index
        locked.save()
        if previous != result.status:
            audit_record(
                actor=actor,
                action=f"server.{result.status}",
                obj=locked,
                before={"status": previous},
                after={"status": result.status},
                reason=result.error,
            )
            request_publish()  # a server going down (or back up) flips healthy in the table
    return locked


def fleet_probe(*, server_ids: list[int] | None = None, actor: Actor | None = None) -> dict[str, int]:
    """Probe servers in parallel (bounded), then record the results. Returns a count per status."""
    servers = list(Server.objects.all() if server_ids is None else Server.objects.filter(pk__in=server_ids))
    timeout = settings.SWITCHYARD_TRITON_TIMEOUT_SECONDS
    results = fan_out(lambda s: probe(s.http_url, timeout=timeout), servers,
                      concurrency=settings.SWITCHYARD_PROBE_CONCURRENCY, name="probe")
    counts: dict[str, int] = {}
    for server, result in zip(servers, results):
        server_record_probe(server=server, result=result, actor=actor)
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts


def server_probe_now(*, actor: Actor, server: Server) -> Server:
    """An admin's "probe now": the same probe the periodic task runs, for one server."""
    authorize_platform_admin(actor)
    fleet_probe(server_ids=[server.pk], actor=actor)
    return Server.objects.select_related("pool").get(pk=server.pk)
