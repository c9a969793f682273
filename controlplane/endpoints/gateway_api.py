"""The two HTTP calls a gateway makes, under /api/v1/gateway/. Plain Django views: the caller is a
gateway process holding SWITCHYARD_GATEWAY_KEY, not a user or an API token, and these are not
part of the public REST API (nor of its OpenAPI schema).

- GET  table            the stored routing table; ETag "<version>", If-None-Match -> 304.
- POST replicas/report  a replica says which table version it serves; 204.

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

REPLICA_ID_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")  # "/": one worker of a replica, e.g. host:8080/w1
MAX_STATS_BYTES = 4096
MAX_REPORT_BYTES = 16384
REPORT_KEYS = {"replica_id", "address", "table_version", "started_at", "stats"}


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
    for key in sorted(set(data) - REPORT_KEYS):
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
        if not (isinstance(started, (int, float)) and not isinstance(started, bool) and math.isfinite(started)
                and 0 <= started < 253402300800):  # before year 10000
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
    clean = {"replica_id": replica_id, "address": address, "table_version": version, "started_at": started_at,
             "stats": stats}
    return clean, errors


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
