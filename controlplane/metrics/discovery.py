"""GET /api/v1/metrics/targets/[?kind=triton|gateway]: Prometheus's http_sd discovery.

Answers a JSON list of {"targets": ["host:port"], "labels": {...}} (see targets.py). The caller is
a Prometheus server, not a person, so the view is kept out of the OpenAPI schema, like the gateway
API. Who may call it: a platform admin (staff user), with a session or a token holding the read
scope (Prometheus sends it as `authorization: {credentials: <token>}`). Servers are platform-wide
objects and the answer maps the whole fleet, so team members do not get it even read-only. No
token: 401; a token without the read scope, or a user who is not a platform admin: 403.
"""
from __future__ import annotations

import json

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.views import APIView

from controlplane.accounts.access import require_platform_admin, require_scope
from controlplane.accounts.models import Scope
from controlplane.audit.context import Actor
from controlplane.metrics.selectors import scrape_target_groups
from controlplane.metrics.series import KIND_GATEWAY, KIND_TRITON

KINDS = (KIND_TRITON, KIND_GATEWAY)


class TargetsView(APIView):
    @extend_schema(exclude=True)
    def get(self, request):
        actor = Actor.from_request(request)
        require_platform_admin(request.user)
        require_scope(actor, Scope.READ)
        kind = request.query_params.get("kind") or None
        if kind is not None and kind not in KINDS:
            raise ValidationError({"kind": [f"Give one of {', '.join(KINDS)}, or leave it out for both."]})
        body = json.dumps(scrape_target_groups(kind=kind), separators=(",", ":"))
        response = HttpResponse(body, content_type="application/json")
        response["Cache-Control"] = "no-store"
        return response
