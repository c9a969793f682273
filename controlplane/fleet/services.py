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
from controlplane.audit.services import audit_record, create_audited, snapshot
from controlplane.common.errors import Conflict
from controlplane.common.fanout import fan_out
from controlplane.common.tasks import enqueue
from controlplane.fleet.models import Pool, Server, ServerStatus
from controlplane.fleet.triton_client import TritonClient, TritonError

log = logging.getLogger(__name__)

POOL_FIELDS = ["name", "description"]
SERVER_FIELDS = ["name", "pool", "http_url", "grpc_url", "metrics_url", "gpu_type", "gpu_count", "labels"]
SERVER_EDITABLE = set(SERVER_FIELDS)


def pool_create(*, actor: Actor, name: str, description: str = "") -> Pool:
    authorize_platform_admin(actor)
    pool = Pool(name=name, description=description)
    pool.full_clean(validate_unique=False)
    duplicate = Conflict("name", f"A pool named {name} already exists.")
    return create_audited(pool, actor=actor, action="pool.create", fields=POOL_FIELDS, duplicate=duplicate)


def pool_delete(*, actor: Actor, pool: Pool) -> None:
    authorize_platform_admin(actor)
    with transaction.atomic():
        if pool.servers.exists():
            raise Conflict("pool", f"Pool {pool.name} still has servers; move or remove them first.")
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


def server_update(*, actor: Actor, server: Server, **changes) -> Server:
    authorize_platform_admin(actor)
    unknown = set(changes) - SERVER_EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    before = snapshot(server, SERVER_FIELDS)
    for name, value in changes.items():
        setattr(server, name, value)
    server.full_clean(validate_unique=False)
    if "name" in changes and Server.objects.exclude(pk=server.pk).filter(name=server.name).exists():
        raise Conflict("name", f"A server named {server.name} already exists.")
    with transaction.atomic():
        server.save()
        audit_record(actor=actor, action="server.update", obj=server, before=before, after=snapshot(server, SERVER_FIELDS))
    return server


def server_remove(*, actor: Actor, server: Server) -> None:
    authorize_platform_admin(actor)
    with transaction.atomic():
        audit_record(actor=actor, action="server.remove", obj=server, before=snapshot(server, SERVER_FIELDS))
        server.delete()


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
