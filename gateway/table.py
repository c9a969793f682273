"""The routing table: the one contract between the control plane and the gateway.

The control plane builds a plain JSON object, checks it with `parse_table` and publishes it; the
gateway parses what it receives with the same function and serves it. Nothing else crosses the
boundary. `FORMAT` changes only when a field changes meaning; a gateway refuses a format it does not
know and keeps serving its last good table.

Shape (every key is required; lists may be empty):

    {
      "format": 2,
      "version": 42,                        # grows by one with every published change
      "generated_at": 1764600000.0,         # unix seconds, when the control plane built it
      "servers": [{"id": 3, "name": "triton-a", "url": "http://10.0.0.3:8000", "healthy": true}],
      "tokens": [                           # data-plane credentials, by team; only SHA-256 hashes
        {"team": "vision", "sha256": "<64 hex>", "scopes": ["infer", "deploy"], "expires_at": null}
      ],
      "endpoints": [{
        "name": "vision.fraud-scorer",      # the public name: <team>.<endpoint>
        "team": "vision",
        "access": "token",                  # "open" or "token"
        "sticky": {"header": "X-User-Id"},  # or {"cookie": "uid"}, or null
        "labels": {"stable": 2, "canary": 3},
        "variants": [                       # in bucket order: sticky buckets are given out in this order
          {"name": "canary", "version": 3, "weight": 5, "model": "vision.fraud-scorer", "servers": [3],
           "guard": {"max_error_ratio": 0.05, "min_requests": 20, "window_s": 10}},
          {"name": "stable", "version": 2, "weight": 95, "model": "vision.fraud-scorer", "servers": [3, 4],
           "guard": null}
        ],
        "shadow": {"variant": {...same shape as a variant, weight 0, guard null...}, "percent": 10.0,
                   "rtol": 1e-5, "atol": 1e-6}   # or null
      }]
    }

A variant's `servers` are the servers where its version is READY with the pinned config; a server
that the prober reports down is still listed, with `healthy: false`, so the gateway can tell
"no READY server" from "every READY server is down".

A variant's `guard` (or null) is the data plane's own error-ratio brake (gateway/guard.py): once
at least `min_requests` answers in the last `window_s` seconds were counted and more than
`max_error_ratio` of them were errors (a 5xx, or no answer from upstream), the gateway gives the
variant no more weighted or sticky traffic until a table changes its guard, and reports the trip
to the control plane. Format 2 added it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

FORMAT = 2
REDIS_KEY = "switchyard:routing-table"  # the last published table, in the Redis database of REDIS_URL
SCOPES = frozenset({"read", "infer", "deploy", "admin"})
ACCESS = frozenset({"open", "token"})
# Public endpoint names are "<team>.<name>", each part a DNS label (RFC 1123), as model names are.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
NAME_RE = re.compile(rf"^{_LABEL}\.{_LABEL}$")
TEAM_RE = re.compile(rf"^{_LABEL}$")
VARIANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")  # an RFC 9110 token
COOKIE_RE = HEADER_RE
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
URL_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(?:/[^\s?#]*)?$")  # no query, fragment or credentials


def redis_channel(redis_url: str) -> str:
    """The pub/sub channel that carries each published table through `redis_url`. A key lives in
    one Redis database, but a channel belongs to the whole server; so the channel names the
    database, and two installations (or test runs) sharing a Redis server on different databases
    never take each other's tables."""
    parts = urlsplit(redis_url)
    db = parse_qs(parts.query).get("db", [""])[0]
    if not db and parts.scheme != "unix":
        db = parts.path.strip("/")
    return f"{REDIS_KEY}@db{db or 0}"


class TableError(ValueError):
    """The table breaks the contract. `path` says where, e.g. `endpoints[2].variants[0].weight`."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True, slots=True)
class Server:
    id: int
    name: str
    url: str
    healthy: bool


@dataclass(frozen=True, slots=True)
class Token:
    team: str
    sha256: str
    scopes: frozenset[str]
    expires_at: float | None  # unix seconds


@dataclass(frozen=True, slots=True)
class Guard:
    max_error_ratio: float  # trip when errors / requests is above this...
    min_requests: int  # ...over at least this many answers...
    window_s: float  # ...counted in the last window_s seconds


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    version: int
    weight: int
    model: str  # the Triton model name on the servers
    servers: tuple[int, ...]
    guard: Guard | None = None


@dataclass(frozen=True, slots=True)
class Shadow:
    variant: Variant
    percent: float
    rtol: float
    atol: float


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    team: str
    access: str
    sticky_header: str | None
    sticky_cookie: str | None
    labels: dict[str, int]
    variants: tuple[Variant, ...]
    shadow: Shadow | None


@dataclass(frozen=True, slots=True)
class RoutingTable:
    version: int
    generated_at: float
    servers: dict[int, Server]
    tokens: dict[str, Token]  # by sha256
    endpoints: dict[str, Endpoint]  # by public name


EMPTY = RoutingTable(version=0, generated_at=0.0, servers={}, tokens={}, endpoints={})


def parse_table(data: Any) -> RoutingTable:
    """Check `data` (decoded JSON) against the contract and return the table. Raises TableError."""
    obj = _object(data, "table", {"format", "version", "generated_at", "servers", "tokens", "endpoints"})
    if obj["format"] != FORMAT or isinstance(obj["format"], bool):
        raise TableError("format", f"unknown format {obj['format']!r}; this gateway reads format {FORMAT}")
    version = _int(obj["version"], "version", minimum=0)
    generated_at = _number(obj["generated_at"], "generated_at", minimum=0)

    servers: dict[int, Server] = {}
    for i, item in enumerate(_list(obj["servers"], "servers")):
        path = f"servers[{i}]"
        s = _object(item, path, {"id", "name", "url", "healthy"})
        server = Server(
            id=_int(s["id"], f"{path}.id", minimum=1),
            name=_str(s["name"], f"{path}.name", max_length=253),
            url=_match(s["url"], f"{path}.url", URL_RE, "an http(s) URL without query, fragment or credentials"),
            healthy=_bool(s["healthy"], f"{path}.healthy"),
        )
        if server.id in servers:
            raise TableError(f"{path}.id", f"server {server.id} is listed twice")
        servers[server.id] = server

    tokens: dict[str, Token] = {}
    for i, item in enumerate(_list(obj["tokens"], "tokens")):
        path = f"tokens[{i}]"
        t = _object(item, path, {"team", "sha256", "scopes", "expires_at"})
        scopes = frozenset(_str(x, f"{path}.scopes", max_length=16) for x in _list(t["scopes"], f"{path}.scopes"))
        if not scopes <= SCOPES:
            raise TableError(f"{path}.scopes", f"unknown scopes {sorted(scopes - SCOPES)}")
        token = Token(
            team=_match(t["team"], f"{path}.team", TEAM_RE, "a team slug"),
            sha256=_match(t["sha256"], f"{path}.sha256", SHA256_RE, "64 lower-case hex digits"),
            scopes=scopes,
            expires_at=None if t["expires_at"] is None else _number(t["expires_at"], f"{path}.expires_at", minimum=0),
        )
        if token.sha256 in tokens:
            raise TableError(f"{path}.sha256", "token listed twice")
        tokens[token.sha256] = token

    endpoints: dict[str, Endpoint] = {}
    for i, item in enumerate(_list(obj["endpoints"], "endpoints")):
        endpoint = _endpoint(item, f"endpoints[{i}]", servers)
        if endpoint.name in endpoints:
            raise TableError(f"endpoints[{i}].name", f"endpoint {endpoint.name} is listed twice")
        endpoints[endpoint.name] = endpoint
    return RoutingTable(version=version, generated_at=generated_at, servers=servers, tokens=tokens, endpoints=endpoints)


def _endpoint(item: Any, path: str, servers: dict[int, Server]) -> Endpoint:
    e = _object(item, path, {"name", "team", "access", "sticky", "labels", "variants", "shadow"})
    name = _match(e["name"], f"{path}.name", NAME_RE, "<team>.<name>, each a DNS label")
    team = _match(e["team"], f"{path}.team", TEAM_RE, "a team slug")
    if name.split(".", 1)[0] != team:
        raise TableError(f"{path}.name", f"must start with its team, {team}.")
    access = _str(e["access"], f"{path}.access", max_length=8)
    if access not in ACCESS:
        raise TableError(f"{path}.access", f"must be one of {sorted(ACCESS)}")
    sticky_header = sticky_cookie = None
    if e["sticky"] is not None:
        sticky = _object(e["sticky"], f"{path}.sticky", None)
        if set(sticky) == {"header"}:
            sticky_header = _match(sticky["header"], f"{path}.sticky.header", HEADER_RE, "an HTTP header name")
        elif set(sticky) == {"cookie"}:
            sticky_cookie = _match(sticky["cookie"], f"{path}.sticky.cookie", COOKIE_RE, "a cookie name")
        else:
            raise TableError(f"{path}.sticky", 'must be {"header": name}, {"cookie": name} or null')
    labels = {}
    for label, version in _object(e["labels"], f"{path}.labels", None).items():
        _match(label, f"{path}.labels", LABEL_RE, "label names are lower-case words")
        labels[label] = _int(version, f"{path}.labels.{label}", minimum=1)
    variants = tuple(_variant(v, f"{path}.variants[{j}]", servers) for j, v in enumerate(_list(e["variants"], f"{path}.variants")))
    if len({v.name for v in variants}) != len(variants):
        raise TableError(f"{path}.variants", "variant names must be unique within an endpoint")
    shadow = None
    if e["shadow"] is not None:
        sp = f"{path}.shadow"
        s = _object(e["shadow"], sp, {"variant", "percent", "rtol", "atol"})
        shadow = Shadow(
            variant=_variant(s["variant"], f"{sp}.variant", servers, shadow=True),
            percent=_number(s["percent"], f"{sp}.percent", minimum=0, maximum=100),
            rtol=_number(s["rtol"], f"{sp}.rtol", minimum=0),
            atol=_number(s["atol"], f"{sp}.atol", minimum=0),
        )
        if shadow.variant.name in {v.name for v in variants}:
            raise TableError(f"{sp}.variant.name", "the shadow variant must not also serve")
    return Endpoint(name=name, team=team, access=access, sticky_header=sticky_header, sticky_cookie=sticky_cookie,
                    labels=labels, variants=variants, shadow=shadow)


def _variant(item: Any, path: str, servers: dict[int, Server], *, shadow: bool = False) -> Variant:
    v = _object(item, path, {"name", "version", "weight", "model", "servers", "guard"})
    server_ids = tuple(_int(x, f"{path}.servers", minimum=1) for x in _list(v["servers"], f"{path}.servers"))
    for server_id in server_ids:
        if server_id not in servers:
            raise TableError(f"{path}.servers", f"server {server_id} is not in the table's servers")
    if len(set(server_ids)) != len(server_ids):
        raise TableError(f"{path}.servers", "a server is listed twice")
    return Variant(
        name=_match(v["name"], f"{path}.name", VARIANT_RE, "letters, digits, '.', '_' or '-'"),
        version=_int(v["version"], f"{path}.version", minimum=1),
        weight=_int(v["weight"], f"{path}.weight", minimum=0, maximum=1_000_000),
        model=_str(v["model"], f"{path}.model", max_length=127),
        servers=server_ids,
        guard=_guard(v["guard"], f"{path}.guard", shadow),
    )


def _guard(value: Any, path: str, shadow: bool) -> Guard | None:
    if value is None:
        return None
    if shadow:
        raise TableError(path, "must be null: the shadow takes no weighted traffic to guard")
    g = _object(value, path, {"max_error_ratio", "min_requests", "window_s"})
    return Guard(
        max_error_ratio=_number(g["max_error_ratio"], f"{path}.max_error_ratio", minimum=0, maximum=1),
        min_requests=_int(g["min_requests"], f"{path}.min_requests", minimum=1, maximum=1_000_000),
        window_s=_positive(g["window_s"], f"{path}.window_s", maximum=600),
    )


# -- strict JSON helpers: bool is not a number, and no key is silently ignored ------------------

def _object(value: Any, path: str, keys: set[str] | None) -> dict:
    if not isinstance(value, dict):
        raise TableError(path, "must be an object")
    if keys is not None and set(value) != keys:
        missing, extra = sorted(keys - set(value)), sorted(set(value) - keys)
        raise TableError(path, f"missing keys {missing}" if missing else f"unknown keys {extra}")
    return value


def _list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise TableError(path, "must be a list")
    return value


def _str(value: Any, path: str, *, max_length: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise TableError(path, f"must be a non-empty string of at most {max_length} characters")
    return value


def _match(value: Any, path: str, pattern: re.Pattern, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise TableError(path, f"must be {what}, got {value!r:.80}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise TableError(path, "must be true or false")
    return value


def _int(value: Any, path: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TableError(path, "must be an integer")
    _bounds(value, path, minimum, maximum)
    return value


def _number(value: Any, path: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise TableError(path, "must be a finite number")
    _bounds(value, path, minimum, maximum)
    return float(value)


def _positive(value: Any, path: str, *, maximum: float) -> float:
    number = _number(value, path, maximum=maximum)
    if number <= 0:
        raise TableError(path, "must be more than 0")
    return number


def _bounds(value, path, minimum, maximum) -> None:
    if minimum is not None and value < minimum:
        raise TableError(path, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise TableError(path, f"must be at most {maximum}")
