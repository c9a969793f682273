"""The hash chain over audit events: canonical content and hashing, with no database access.

An event's hash is sha256 over the canonical JSON of everything it records plus the hash of the
event before it. The canonical form is frozen: changing it breaks every stored hash. The first
migration that chains events imports this module, which is fine only because of that.
"""
import hashlib
import ipaddress
import json
from datetime import UTC, datetime
from functools import lru_cache

from django.core.serializers.json import DjangoJSONEncoder

GENESIS = ""  # the prev_hash of the first event

# The recorded fields, as attribute names of AuditEvent (and keys of .values()).
FIELDS = (
    "created_at", "actor_user_id", "actor_name", "token_id", "source", "request_id", "ip", "team_id",
    "object_type", "object_id", "object_repr", "action", "before", "after", "reason", "prev_hash",
)


def normalize_json(value):
    """The form a JSON value has after a round trip through PostgreSQL jsonb or SQLite text.

    jsonb prints 1e16 as 10000000000000000, which Python reads back as an int, so integral
    floats become ints here, at write and at verify time alike. NaN and infinities are refused,
    as jsonb refuses them.
    """
    if value is None:
        return None
    return _integral_floats_to_int(json.loads(json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False)))


def _integral_floats_to_int(value):
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [_integral_floats_to_int(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_to_int(v) for k, v in value.items()}
    return value


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


@lru_cache(maxsize=4096)  # verification meets the same few addresses again and again
def _ip(value: str | None) -> str | None:
    # PostgreSQL's inet and Python print IPv6 differently; the exploded form is unambiguous.
    return ipaddress.ip_address(value).exploded if value else None


def canonical(row: dict) -> bytes:
    """The bytes that are hashed for one event. ``row`` maps FIELDS to values as read from the
    database, or as audit_record writes them (before and after already through normalize_json)."""
    content = {name: row[name] for name in FIELDS}
    content["created_at"] = _instant(row["created_at"])
    content["ip"] = _ip(row["ip"])
    content["before"] = _integral_floats_to_int(row["before"])
    content["after"] = _integral_floats_to_int(row["after"])
    content["object_id"] = str(row["object_id"])
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def event_hash(row: dict) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()
