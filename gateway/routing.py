"""Which variant and which server answer a request: pure decisions, no I/O.

The caller supplies every random number (`rand` in [0, 1)), so each choice is a plain function
of its inputs and can be tested exhaustively.

Sticky routing hashes a key (a header or cookie value) into one of `BUCKETS` buckets and gives
the buckets out to the candidate variants in table order, as cumulative ranges proportional to
weight. Because the first variant's range always starts at bucket 0, growing its share (a
canary going 1% -> 5% -> 100%) only ever adds buckets to it: a user who saw the canary keeps
seeing it. The control plane lists the canary (green) first for exactly this reason.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Mapping, Sequence
from typing import NamedTuple
from urllib.parse import quote, unquote

from gateway.table import Endpoint, Variant

BUCKETS = 10_000

ACTIONS = ("infer", "ready", "config", "stats")  # and "metadata": no suffix


def bucket_of(key: str) -> int:
    """The sticky bucket of `key`: the first 8 bytes of SHA-256 of its UTF-8 encoding, read
    big-endian, mod BUCKETS. Stable across processes, restarts and languages (unlike hash()),
    so every replica, and the control plane if it wants to, puts a key in the same bucket."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


class RouteError(Exception):
    """A request that cannot be routed; answer `status` with Triton's `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def select_variant(
    endpoint: Endpoint,
    *,
    version: str | None,
    sticky_key: str | None,
    explicit_variant: str | None,
    rand: float,
    tripped: Container[str] = (),
) -> Variant:
    """The variant that serves this request. Raises RouteError (404, 400 or 503).

    - `explicit_variant` (the caller has checked that the client may choose) wins. The shadow
      variant may be named too, so a deployer can try it directly. If a version is also asked
      and the variant does not serve it, that is a contradiction: 400, never a silent swap.
    - `version` ("3", or a label such as "canary") narrows the candidates to the variants
      serving that version. An explicit version is honoured even when all of its variants have
      weight 0: that is how a tester reaches a canary at 0% before any traffic moves. Such
      candidates then count as weighted equally.
    - Among the candidates, a sticky key picks by bucket, otherwise `rand` picks by weight.
    - Without a version, weight 0 everywhere (or no variant at all) is a 503: nothing takes traffic.

    A variant with no READY server (an empty `servers` list) takes no weighted or sticky traffic
    while another candidate has one: its share goes to the others instead of failing for certain,
    the table being built from what is READY, not from what was asked for. The control plane shows
    such a variant as having no ready server. Only when no candidate has a server is one chosen
    anyway, so that the caller answers a clear 503. Whether listed servers are up is the caller's.

    `tripped` names the variants whose guard has tripped (gateway/guard.py). They take no weighted
    or sticky traffic, as if their weight were 0: requests go to the other candidates, in
    proportion to their weights, and a sticky key that mapped to a tripped variant moves to the
    others (its place within the tripped range, stretched over all buckets, picks among them) while
    every other key stays where it was. When no other candidate takes traffic, an explicit version
    is still honoured (as at weight 0) and otherwise it is a 503. The explicit variant wins anyway.
    """
    if explicit_variant is not None:
        variant = _named_variant(endpoint, explicit_variant)
        if version is not None:
            wanted = _resolve_version(endpoint, version)
            if variant.version != wanted:
                raise RouteError(
                    400,
                    f"variant '{variant.name}' of endpoint '{endpoint.name}' serves version "
                    f"{variant.version}, not version {wanted}",
                )
        return variant

    if version is None:
        candidates = _placed(endpoint.variants, weighted=True)
        weights = [v.weight for v in candidates]
        if sum(weights) == 0:
            raise RouteError(503, f"endpoint '{endpoint.name}' has no variant with traffic")
    else:
        wanted = _resolve_version(endpoint, version)
        candidates = tuple(v for v in endpoint.variants if v.version == wanted)
        if not candidates:
            raise RouteError(404, f"endpoint '{endpoint.name}' does not serve version {wanted}")
        candidates = _placed(candidates, weighted=any(v.weight for v in candidates))
        weights = [v.weight for v in candidates]
        if sum(weights) == 0:
            weights = [1] * len(candidates)

    if tripped:
        open_weights = [0 if v.name in tripped else w for v, w in zip(candidates, weights)]
        if sum(open_weights) > 0:
            if sticky_key is not None:
                return candidates[_moved_bucket_owner(weights, open_weights, bucket_of(sticky_key))]
            return candidates[_weighted_index(open_weights, rand)]
        if version is None:
            stopped = ", ".join(sorted(f"'{v.name}'" for v in candidates if v.name in tripped))
            raise RouteError(503, f"endpoint '{endpoint.name}' has no variant with traffic: the guard of "
                                  f"variant {stopped} tripped")

    if sticky_key is not None:
        return candidates[_bucket_owner(weights, bucket_of(sticky_key))]
    return candidates[_weighted_index(weights, rand)]


def _moved_bucket_owner(weights: Sequence[int], open_weights: Sequence[int], bucket: int) -> int:
    """The owner of `bucket` under `weights`, unless `open_weights` took its share away: then its
    position within the lost range, stretched over all BUCKETS, picks among `open_weights`. So the
    keys of a tripped variant spread over the others in proportion, and no other key moves."""
    index = _bucket_owner(weights, bucket)
    if open_weights[index] > 0:
        return index
    start, end = bucket_ranges(weights)[index]
    return _bucket_owner(open_weights, (bucket - start) * BUCKETS // (end - start))


def _placed(variants: Sequence[Variant], *, weighted: bool) -> Sequence[Variant]:
    """The variants that have a server (and weight, if `weighted`), or all of them if none has."""
    placed = tuple(v for v in variants if v.servers and (v.weight > 0 or not weighted))
    return placed or variants


def bucket_ranges(weights: Sequence[int]) -> list[tuple[int, int]]:
    """Each weight's [start, end) range of buckets, in order; zero weights get empty ranges.
    Integer arithmetic, so every replica computes the very same boundaries."""
    total = sum(weights)
    ranges, cumulative, start = [], 0, 0
    for w in weights:
        cumulative += w
        end = cumulative * BUCKETS // total
        ranges.append((start, end))
        start = end
    return ranges


def _bucket_owner(weights: Sequence[int], bucket: int) -> int:
    total = sum(weights)
    cumulative = 0
    for i, w in enumerate(weights):
        cumulative += w
        if bucket < cumulative * BUCKETS // total:
            return i
    return len(weights) - 1  # unreachable: the last range ends at BUCKETS


def _weighted_index(weights: Sequence[int], rand: float) -> int:
    total = sum(weights)
    x = rand * total
    cumulative = 0
    last = 0
    for i, w in enumerate(weights):
        if w <= 0:
            continue
        cumulative += w
        last = i
        if x < cumulative:
            return i
    return last  # rand * total rounded up to total


def _named_variant(endpoint: Endpoint, name: str) -> Variant:
    for variant in endpoint.variants:
        if variant.name == name:
            return variant
    if endpoint.shadow is not None and endpoint.shadow.variant.name == name:
        return endpoint.shadow.variant
    raise RouteError(404, f"endpoint '{endpoint.name}' has no variant '{name}'")


def _resolve_version(endpoint: Endpoint, version: str) -> int:
    if version.isascii() and version.isdigit():
        return int(version)
    if version in endpoint.labels:
        return endpoint.labels[version]
    raise RouteError(404, f"endpoint '{endpoint.name}' has no label '{version}'")


def least_outstanding(
    server_ids: Sequence[int],
    outstanding: Mapping[int, int],
    excluded: Container[int],
    rand: float,
) -> int | None:
    """The server with the fewest requests in flight (absent counts as 0), skipping `excluded`.
    Ties go to `rand`, not to the first listed: at low load everything ties at 0, and always
    taking the first would pile every request onto one server. Draw `rand` afresh, not the one
    that chose the variant: that one is confined to the variant's slice of [0, 1) (a 5% canary
    only ever sees rand < 0.05), which would send all of the canary's ties to its first server."""
    best: list[int] = []
    fewest = None
    for server_id in server_ids:
        if server_id in excluded:
            continue
        n = outstanding.get(server_id, 0)
        if fewest is None or n < fewest:
            fewest, best = n, [server_id]
        elif n == fewest:
            best.append(server_id)
    if not best:
        return None
    return best[min(int(rand * len(best)), len(best) - 1)]


# -- paths --------------------------------------------------------------------------------------

class ModelRequest(NamedTuple):
    name: str  # percent-decoded endpoint name
    version: str | None  # the raw version segment: "3" or a label; None when absent
    action: str  # "metadata", "infer", "ready", "config" or "stats"


# Triton's own route (src/http_server.cc, model_regex_) with the version widened to a label:
#   /v2/models/([^/]+)(?:/versions/([0-9]+))?(?:/(infer|generate|generate_stream|ready|config|stats|trace/setting))?
# generate, generate_stream and trace/setting are not served by the gateway.
_MODEL_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(infer|ready|config|stats))?")

# Admin routes of a Triton server: they act on the whole server (load, unload, shared memory,
# tracing, logging) or read every team's models, so the gateway never forwards them.
_REFUSED_PREFIXES = ("/v2/repository", "/v2/systemsharedmemory", "/v2/cudasharedmemory", "/v2/trace", "/v2/logging")
_REFUSED_MODEL_PATH = re.compile(r"/v2/models/(?:stats|[^/]+/trace/setting)")


def parse_model_path(path: str) -> ModelRequest | None:
    """Split a model route into (name, version, action); None if `path` is not one.
    The name is percent-decoded after splitting, so "%2F" cannot add a path segment."""
    path = path.split("?", 1)[0]
    m = _MODEL_PATH.fullmatch(path)
    if m is None or path == "/v2/models/stats":
        return None
    name = unquote(m.group(1), errors="replace")
    version = unquote(m.group(2), errors="replace") if m.group(2) is not None else None
    if not name or version == "":
        return None
    return ModelRequest(name, version, m.group(3) or "metadata")


def upstream_path(model: str, version: int, action: str) -> str:
    """The Triton route for one variant. Always versioned: Triton without a version picks the
    highest READY one, which beside a same-servers green would be the wrong model. Triton reads a
    version on every action, config included (HandleModelConfig calls GetModelConfig with it)."""
    base = f"/v2/models/{quote(model, safe='')}/versions/{int(version)}"
    if action == "metadata":
        return base
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return f"{base}/{action}"


def is_repository_path(path: str) -> bool:
    """Model control (/v2/repository...): load and unload belong to the control plane only."""
    return _under(path.split("?", 1)[0], "/v2/repository")


def is_refused_path(path: str) -> bool:
    """A Triton admin route the gateway never forwards: repository control, shared-memory
    registration, trace and logging settings, and the all-models statistics."""
    path = path.split("?", 1)[0]
    return any(_under(path, prefix) for prefix in _REFUSED_PREFIXES) or _REFUSED_MODEL_PATH.fullmatch(path) is not None


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
