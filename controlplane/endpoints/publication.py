"""Publishing the routing table: store a new version when the built table changes, then push it.

Every change the table depends on calls `request_publish()` inside its transaction; the build runs
once, after the commit. The beat task `endpoints.publish_table` calls `publish_if_changed()` every
few seconds as a safety net (token expiry, a missed hook, a lost Redis message).

Delivery to the gateway, both carrying the same bytes (`table_json`):
- Redis: `SET switchyard:routing-table <json>` and `PUBLISH switchyard:routing-table@db<N> <json>`
  (the channel names REDIS_URL's database: channels are server-wide), plus
  `SET switchyard:routing-table:version <n>` (see `_PUSH`);
- HTTP: `GET /api/v1/gateway/table` with `ETag: "<version>"` (controlplane/endpoints/gateway_api.py).
Redis is a fast path only: when it is down the gateway's HTTP poll still converges.
"""
from __future__ import annotations

import hashlib
import json
import logging

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from controlplane.endpoints.models import RoutingTableState
from gateway.table import REDIS_KEY, redis_channel

log = logging.getLogger(__name__)

# The key and the channel are the contract's (gateway.table), as the table itself is.
REDIS_VERSION_KEY = "switchyard:routing-table:version"
STATE_PK = 1


def request_publish() -> None:
    """Publish the routing table after the current transaction commits (at once outside one).
    Several calls in one transaction build and publish once: each registers a callback, and the
    first to run clears the request so the others return at once (no query)."""
    transaction.get_connection().routing_publish_requested = True
    # robust: a failed publish is logged, never raised into the change that was just committed;
    # the beat task publishes it a few seconds later.
    transaction.on_commit(publish_after_commit, robust=True)


def publish_after_commit() -> None:
    conn = transaction.get_connection()
    if not getattr(conn, "routing_publish_requested", False):
        return  # an earlier callback of the same commit published already
    conn.routing_publish_requested = False
    publish_if_changed()


def table_json(table: dict) -> str:
    """The table's bytes on the wire, canonical so that the HTTP body and the Redis message are
    the same string (the stored JSON loses key order in PostgreSQL's jsonb)."""
    return json.dumps(table, sort_keys=True, separators=(",", ":"), allow_nan=False)


def table_digest(table: dict) -> str:
    """SHA-256 over the table's content: everything but `version` and `generated_at`."""
    content = {k: v for k, v in table.items() if k not in ("version", "generated_at")}
    return hashlib.sha256(table_json(content).encode()).hexdigest()


def publish_if_changed() -> int:
    """Build the table; if it differs from the last published one, store it as the next version
    and push it to Redis after the commit. Returns the current version."""
    from controlplane.endpoints.routing import build_table

    with transaction.atomic():
        _lock_state()
        # Build under the lock: a publisher that waited for it sees every change committed before
        # it got it, so a slower, older build can never overwrite a newer table.
        state = RoutingTableState.objects.get(pk=STATE_PK)
        table = build_table(version=state.version + 1)
        digest = table_digest(table)
        if digest == state.digest:
            return state.version
        state.version = table["version"]
        state.digest = digest
        state.body = table
        state.published_at = timezone.now()
        state.save(update_fields=["version", "digest", "body", "published_at"])
        payload = table_json(table)
        transaction.on_commit(lambda: push_to_redis(payload, state.version))
    log.info("routing table v%s published (%s)", state.version, digest[:12])
    return state.version


def _lock_state() -> None:
    RoutingTableState.objects.get_or_create(pk=STATE_PK)
    if connection.vendor == "sqlite":
        # SQLite ignores FOR UPDATE; a write takes its database lock now, before the build reads.
        RoutingTableState.objects.filter(pk=STATE_PK).update(version=F("version"))
    else:
        RoutingTableState.objects.select_for_update().filter(pk=STATE_PK).values_list("pk").get()


# Versions only move forward in Redis: a delayed push of an older version (two publishers'
# after-commit pushes racing) must not overwrite a newer table. ARGV: json, version, force, channel.
_PUSH = """
local current = tonumber(redis.call('GET', KEYS[2]) or '-1')
if ARGV[3] ~= '1' and current >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"""

_clients: dict[str, object] = {}


def _redis():
    import redis

    url = settings.REDIS_URL
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return _clients[url]


def push_to_redis(payload: str, version: int, *, force: bool = False) -> bool:
    """SET and PUBLISH the table on Redis when REDIS_URL is set. Never raises: Redis being down
    must not fail a change, and the gateway's HTTP poll still finds the table."""
    if not settings.REDIS_URL:
        return False
    try:
        return bool(_redis().eval(_PUSH, 2, REDIS_KEY, REDIS_VERSION_KEY, payload, version, "1" if force else "0",
                                  redis_channel(settings.REDIS_URL)))
    except Exception:  # any Redis or network error
        log.warning("routing table v%s not pushed to Redis; gateways will poll it over HTTP", version, exc_info=True)
        return False


def repair_redis() -> bool:
    """Push the stored table again when Redis does not hold its version (Redis restarted or was
    flushed, a push failed, or the database was reset to a lower version). Returns whether it pushed."""
    if not settings.REDIS_URL:
        return False
    state = RoutingTableState.objects.filter(pk=STATE_PK).first()
    if state is None or not state.version:
        return False
    try:
        held = _redis().get(REDIS_VERSION_KEY)
    except Exception:
        log.warning("Redis unreachable; routing table not checked there", exc_info=True)
        return False
    if held is not None and int(held) == state.version:
        return False
    return push_to_redis(table_json(state.body), state.version, force=held is not None and int(held) > state.version)
