"""Building the routing table (gateway/table.py's contract) from the database.

Reads only, in a fixed number of queries whatever the number of endpoints, servers or tokens.
Publishing it is publication.py's job.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Max, Q
from django.utils import timezone

from controlplane.accounts.models import ROLE_RANK, ApiToken, Membership, Role, Scope
from controlplane.endpoints.models import Endpoint, EndpointKind, EndpointVariant
from controlplane.fleet.models import Server, ServerStatus
from controlplane.placements.models import PlacementTarget, TargetState
from controlplane.registry.models import ModelVersion, VersionLabel, VersionStatus
from gateway.table import FORMAT, parse_table

# The scopes the gateway reads: infer to call an endpoint, deploy (or admin) to pick a variant
# with the explicit-variant header. read means nothing on the data plane.
LATEST = "latest"
DATA_PLANE_SCOPES = (Scope.INFER.value, Scope.DEPLOY.value, Scope.ADMIN.value)
ROLE_CAPPED_SCOPES = {Scope.DEPLOY.value, Scope.ADMIN.value}  # a personal token holds these only as a deployer or admin


def build_table(*, version: int = 0) -> dict:
    """The routing table as JSON-ready data, checked against the contract (raises TableError)."""
    endpoints = list(
        Endpoint.objects.select_related("team", "model__team", "shadow_version").order_by("team__slug", "name")
    )
    model_ids = {e.model_id for e in endpoints}
    variants_by_endpoint = defaultdict(list)
    pinned = [e.pk for e in endpoints if e.kind == EndpointKind.PINNED]
    if pinned:
        for variant in (
            EndpointVariant.objects.filter(endpoint_id__in=pinned).select_related("version").order_by("endpoint_id", "position", "id")
        ):
            variants_by_endpoint[variant.endpoint_id].append(variant)
    labels = defaultdict(dict)  # model id -> {label: version number}
    # servers_of[model id][version number] -> server ids where that version is READY
    servers_of = defaultdict(lambda: defaultdict(list))
    if model_ids:
        for model_id, name, number in (
            VersionLabel.objects.filter(model_id__in=model_ids).values_list("model_id", "name", "version__version")
        ):
            labels[model_id][name] = number
        # "latest" is computed, never stored: the highest ready version, as the registry shows it.
        for model_id, number in (
            ModelVersion.objects.filter(model_id__in=model_ids, status=VersionStatus.READY)
            .values("model_id").annotate(latest=Max("version")).values_list("model_id", "latest")
        ):
            labels[model_id][LATEST] = number
        # A target replaced on its own server (a same-servers green loaded beside blue, or blue
        # unloaded after it) keeps serving its versions while the replacement loads: Triton swaps
        # a model in only when its new load is READY, and keeps the old one if the load fails.
        serving = Q(state=TargetState.READY) | Q(
            state=TargetState.REMOVED, replaced_by__state__in=[TargetState.PENDING, TargetState.LOADING])
        for model_id, server_id, versions in (
            PlacementTarget.objects.filter(serving, model_id__in=model_ids, server__isnull=False)
            .order_by("server_id").values_list("model_id", "server_id", "placement__versions")
        ):
            for number in versions:
                if server_id not in servers_of[model_id][number]:
                    servers_of[model_id][number].append(server_id)
    rollouts = deployment_overrides({e.pk for e in endpoints})

    referenced: set[int] = set()

    def variant(name: str, number: int, weight: int, endpoint: Endpoint, guard: dict | None = None) -> dict:
        servers = servers_of[endpoint.model_id][number]
        referenced.update(servers)
        return {"name": name, "version": number, "weight": weight, "model": endpoint.model.triton_name,
                "servers": servers, "guard": guard}

    rows = []
    for e in endpoints:
        if e.pk in rollouts:
            # A rollout in progress: green first (so sticky buckets move monotonically to it as its
            # share grows), then blue.
            r = rollouts[e.pk]
            variants = [variant("green", r.green, r.percent, e, r.guard), variant("blue", r.blue, 100 - r.percent, e)]
        elif e.kind == EndpointKind.LABEL:
            number = labels[e.model_id].get(e.label)
            variants = [variant(e.label, number, 100, e)] if number is not None else []
        else:
            variants = [variant(v.name, v.version.version, v.weight, e) for v in variants_by_endpoint[e.pk]]
        shadow = None
        if e.shadow_version_id is not None and e.shadow_percent > 0:
            number = e.shadow_version.version
            shadow = {"variant": variant(f"shadow-v{number}", number, 0, e), "percent": e.shadow_percent,
                      "rtol": e.shadow_rtol, "atol": e.shadow_atol}
        sticky = {"header": e.sticky_header} if e.sticky_header else {"cookie": e.sticky_cookie} if e.sticky_cookie else None
        rows.append({
            "name": e.public_name, "team": e.team.slug, "access": e.access, "sticky": sticky,
            "labels": dict(sorted(labels[e.model_id].items())), "variants": variants, "shadow": shadow,
        })

    servers = [
        # healthy is reachability only. A draining server needs no flag: the drain moves its targets
        # to UNLOADING in the same transaction, so it leaves every variant at once. NOT_READY
        # (live, but Triton's strict readiness says some model is not) and UNKNOWN (not probed
        # yet) still serve their READY models.
        {"id": pk, "name": name, "url": url, "healthy": status != ServerStatus.DOWN}
        for pk, name, url, status in Server.objects.filter(pk__in=referenced).order_by("pk")
        .values_list("pk", "name", "http_url", "status")
    ] if referenced else []

    table = {
        "format": FORMAT,
        "version": version,
        "generated_at": time.time(),
        "servers": servers,
        "tokens": data_plane_tokens(),
        "endpoints": rows,
    }
    parse_table(table)
    return table


@dataclass(frozen=True)
class Rollout:
    blue: int
    green: int
    percent: int
    guard: dict | None


def deployment_overrides(endpoint_ids: set[int]) -> dict[int, Rollout]:
    """Endpoints whose traffic a deployment moves now: blue and green with green's share, and the
    data-plane guard on green while it takes traffic. One query."""
    from controlplane.deployments.models import TRAFFIC_STATES, Deployment
    from controlplane.deployments.spec import Gates

    if not endpoint_ids:
        return {}
    found = {}
    for endpoint_id, state, blue, green, percent, gates in Deployment.objects.filter(
            endpoint_id__in=endpoint_ids, state__in=TRAFFIC_STATES).values_list(
            "endpoint_id", "state", "blue_version__version", "green_version__version", "traffic_percent", "gates"):
        found[endpoint_id] = Rollout(blue, green, percent, guard_of(Gates.from_dict(gates)) if state != "rolling_back" else None)
    return found


GUARD_MIN_REQUESTS = 10  # enough answers that a few unlucky errors do not trip it
GUARD_WINDOW_S = 10


def guard_of(gates) -> dict | None:
    """The gateway's guard for green: the error-ratio gate, judged by each gateway on its own
    answers at once, without waiting for Prometheus."""
    if not gates.guard or gates.max_error_ratio is None:
        return None
    return {"max_error_ratio": gates.max_error_ratio, "min_requests": min(gates.min_requests, GUARD_MIN_REQUESTS),
            "window_s": GUARD_WINDOW_S}


def _active_tokens():
    now = timezone.now()
    return ApiToken.objects.filter(revoked_at__isnull=True, user__is_active=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def data_plane_tokens() -> list[dict]:
    """Tokens that may act on the data plane, one entry per token (the table keys them by hash).

    - A team token acts for its team, with its data-plane scopes (issuance capped them already).
    - A personal token acts for its user's team only when the user belongs to exactly one team:
      the table names one team per token, and picking one of several would be a guess. Its deploy
      and admin scopes count only while the user is a deployer or admin there; infer needs no role.
    Three queries.
    """
    entries = []
    for sha256, scopes, expires_at, team in (
        _active_tokens().filter(team__isnull=False).order_by("pk").values_list("secret_hash", "scopes", "expires_at", "team__slug")
    ):
        entries.append(_entry(team, sha256, scopes, expires_at))
    personal = list(
        _active_tokens().filter(team__isnull=True, user__service_team__isnull=True)
        .order_by("pk").values_list("user_id", "secret_hash", "scopes", "expires_at")
    )
    teams_of = defaultdict(list)  # user id -> [(team slug, role)]
    if personal:
        for user_id, team, role in Membership.objects.filter(user_id__in={p[0] for p in personal}).values_list(
            "user_id", "team__slug", "role"
        ):
            teams_of[user_id].append((team, role))
    for user_id, sha256, scopes, expires_at in personal:
        if len(teams_of[user_id]) != 1:
            continue
        [(team, role)] = teams_of[user_id]
        if ROLE_RANK[role] < ROLE_RANK[Role.DEPLOYER]:
            scopes = [s for s in scopes if s not in ROLE_CAPPED_SCOPES]
        entries.append(_entry(team, sha256, scopes, expires_at))
    return [e for e in entries if e["scopes"]]


def _entry(team, sha256, scopes, expires_at) -> dict:
    return {
        "team": team,
        "sha256": sha256,
        "scopes": [s for s in DATA_PLANE_SCOPES if s in scopes],
        "expires_at": expires_at.timestamp() if expires_at else None,
    }
