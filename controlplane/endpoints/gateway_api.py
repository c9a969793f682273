"""The two HTTP calls a gateway makes, under /api/v1/gateway/. Plain Django views: the caller is a
gateway process holding SWITCHYARD_GATEWAY_KEY, not a user or an API token, and these are not
part of the public REST API (nor of its OpenAPI schema).

- GET  table            the stored routing table; ETag "<version>", If-None-Match -> 304.
- POST replicas/report  a replica says which table version it serves, and which of its guards
                        tripped (gateway/guard.py); 204.

Errors are JSON in the API's shape, {"detail": ..., "fields": {...}}: 401 for a missing or wrong
key, 503 when no key is configured.
"""
from __future__ import annotations

import hmac
import json
import math
import re
from datetime import UTC, datetime

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from controlplane.endpoints.models import RoutingTableState
from controlplane.endpoints.publication import STATE_PK, publish_if_changed, table_json
from controlplane.endpoints.replicas import replica_report
from gateway.table import NAME_RE, VARIANT_RE

REPLICA_ID_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")  # "/": one worker of a replica, e.g. host:8080/w1
MAX_STATS_BYTES = 4096
MAX_REPORT_BYTES = 16384
REPORT_KEYS = {"replica_id", "address", "table_version", "started_at", "stats"}
OPTIONAL_REPORT_KEYS = {"trips"}  # a gateway older than the guard does not send it
MAX_TRIPS = 16  # gateway/tablesource.py sends the newest this many
TRIP_KEYS = {"endpoint", "variant", "version", "errors", "requests", "error_ratio", "tripped_at"}
MAX_UNIX_S = 253402300800  # the start of year 10000


def _refused(request) -> JsonResponse | None:
    """None if the request carries the gateway key."""
    key = settings.SWITCHYARD_GATEWAY_KEY
    if not key:
        return JsonResponse({"detail": "The gateway key is not configured: set SWITCHYARD_GATEWAY_KEY on the "
                                       "control plane and give the gateway the same key."}, status=503)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        response = JsonResponse({"detail": "Missing or wrong gateway key (Authorization: Bearer <key>)."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="switchyard-gateway"'
        return response
    return None


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match: a list of entity tags, weak or strong (weak comparison, RFC 9110 13.1.2), or *."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in (t.removeprefix("W/") for t in tags)


@require_GET
def table(request):
    if (refusal := _refused(request)) is not None:
        return refusal
    state = RoutingTableState.objects.filter(pk=STATE_PK).only("version", "body").first()
    if state is None or not state.version:
        publish_if_changed()  # nothing published yet on this database: the first caller publishes
        state = RoutingTableState.objects.get(pk=STATE_PK)
    etag = f'"{state.version}"'
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(table_json(state.body), content_type="application/json")
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    return response


def _bad(fields: dict[str, str]) -> JsonResponse:
    return JsonResponse({"detail": "; ".join(f"{k}: {v}" for k, v in fields.items()),
                         "fields": {k: [v] for k, v in fields.items()}}, status=400)


def _check_report(data) -> tuple[dict, dict[str, str]]:
    if not isinstance(data, dict):
        return {}, {"body": "Send a JSON object."}
    errors = {}
    for key in sorted(REPORT_KEYS - set(data)):
        errors[key] = "This field is required."
    for key in sorted(set(data) - REPORT_KEYS - OPTIONAL_REPORT_KEYS):
        errors[key] = "Unknown field."
    replica_id, address = data.get("replica_id"), data.get("address")
    version, started, stats = data.get("table_version"), data.get("started_at"), data.get("stats")
    if "replica_id" in data and not (isinstance(replica_id, str) and REPLICA_ID_RE.match(replica_id)):
        errors["replica_id"] = "A string of 1-128 letters, digits, '.', '_', ':', '/' or '-'."
    if "address" in data and not (isinstance(address, str) and len(address) <= 255 and "\x00" not in address):
        errors["address"] = "A string of at most 255 characters (no NUL)."
    if "table_version" in data and not (isinstance(version, int) and not isinstance(version, bool)
                                        and 0 <= version < 2**63):
        errors["table_version"] = "An integer, 0 or more."
    started_at = None
    if "started_at" in data:
        if not (_number(started) and 0 <= started < MAX_UNIX_S):
            errors["started_at"] = "A number of unix seconds."
        else:
            started_at = datetime.fromtimestamp(started, tz=UTC)
    if "stats" in data:
        if not isinstance(stats, dict):
            errors["stats"] = "A JSON object."
        elif len(json.dumps(stats, separators=(",", ":"))) > MAX_STATS_BYTES:
            errors["stats"] = f"At most {MAX_STATS_BYTES} bytes of JSON."
        elif _has_nul(stats):  # PostgreSQL's jsonb cannot hold NUL
            errors["stats"] = "No NUL characters."
    trips = data.get("trips", [])
    if "trips" in data and (problem := _trips_problem(trips)):
        errors["trips"] = problem
    clean = {"replica_id": replica_id, "address": address, "table_version": version, "started_at": started_at,
             "stats": stats, "trips": trips}
    return clean, errors


def _trips_problem(trips) -> str | None:
    """What is wrong with a report's `trips`, or None. Each trip says which variant's guard tripped:
    {"endpoint", "variant", "version", "errors", "requests", "error_ratio", "tripped_at"}."""
    if not isinstance(trips, list) or len(trips) > MAX_TRIPS:
        return f"A list of at most {MAX_TRIPS} trips."
    seen = set()
    for i, trip in enumerate(trips):
        where = f"Trip {i}"
        if not isinstance(trip, dict) or set(trip) != TRIP_KEYS:
            return f"{where}: an object with exactly the keys {', '.join(sorted(TRIP_KEYS))}."
        if not (isinstance(trip["endpoint"], str) and NAME_RE.match(trip["endpoint"])):
            return f"{where}: endpoint must be an endpoint's public name, <team>.<name>."
        if not (isinstance(trip["variant"], str) and VARIANT_RE.match(trip["variant"])):
            return f"{where}: variant must be a variant name."
        if not _int(trip["version"], 1):
            return f"{where}: version must be an integer, 1 or more."
        if not (_int(trip["requests"], 1) and _int(trip["errors"], 0) and trip["errors"] <= trip["requests"]):
            return f"{where}: requests must be an integer, 1 or more, and errors one from 0 to requests."
        ratio = trip["error_ratio"]
        if not (_number(ratio) and 0 <= ratio <= 1):
            return f"{where}: error_ratio must be a number from 0 to 1."
        if not (_number(trip["tripped_at"]) and 0 <= trip["tripped_at"] < MAX_UNIX_S):
            return f"{where}: tripped_at must be a number of unix seconds."
        key = (trip["endpoint"], trip["variant"], trip["version"])
        if key in seen:
            return f"{where}: the same variant and version tripped twice."
        seen.add(key)
    return None


def _int(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value < 2**63


def _number(value) -> bool:
    """A finite JSON number (math.isfinite would raise on an int too large for a float)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


@csrf_exempt  # not a browser: authenticated by the gateway key alone, never by a cookie
@require_POST
def replica_report_view(request):
    if (refusal := _refused(request)) is not None:
        return refusal
    if len(request.body) > MAX_REPORT_BYTES:
        return JsonResponse({"detail": f"A report is at most {MAX_REPORT_BYTES} bytes."}, status=413)
    if request.content_type != "application/json":
        return JsonResponse({"detail": "Send application/json."}, status=415)
    try:
        data = json.loads(request.body, parse_constant=_no_constant)
    except ValueError:
        return _bad({"body": "Not valid JSON."})
    clean, errors = _check_report(data)
    if errors:
        return _bad(errors)
    replica_report(**clean)
    return HttpResponse(status=204)


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


urlpatterns = [
    path("table", table, name="gateway-table"),
    path("replicas/report", replica_report_view, name="gateway-replica-report"),
]
