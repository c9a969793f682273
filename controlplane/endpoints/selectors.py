"""Endpoint reads: what a user may see, and whether each endpoint has somewhere to send traffic.

A variant's servers are never stored: they are the servers where an active placement target of
the endpoint's model is READY with a placement whose versions include the variant's version.
Statuses of a whole page of endpoints cost a constant number of queries.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import Max, Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from controlplane.accounts.selectors import visible_teams
from controlplane.audit.models import AuditEvent
from controlplane.endpoints.models import (
    Endpoint,
    EndpointKind,
    EndpointVariant,
    GatewayReplica,
    RoutingTableState,
)
from controlplane.placements.models import PlacementTarget, TargetState
from controlplane.registry.models import (
    Model,
    ModelVersion,
    VersionLabel,
    VersionStatus,
)

SERVING = "serving"
NO_READY_SERVER = "no ready server"
LATEST = "latest"


def endpoints_visible(user) -> QuerySet[Endpoint]:
    """Endpoints of the caller's teams, with their variants, in a constant number of queries."""
    return (
        Endpoint.objects.filter(team__in=visible_teams(user))
        .select_related("team", "model__team", "shadow_version", "created_by")
        .prefetch_related(Prefetch("variants", queryset=EndpointVariant.objects.select_related("version").order_by("position", "id")))
        .order_by("team__slug", "name")
    )


def endpoint_get(user, pk) -> Endpoint:
    """404 for endpoints of other teams, exactly as for missing ones."""
    return get_object_or_404(endpoints_visible(user), pk=pk)


def model_for_endpoint(team, pk: int) -> Model:
    """The model an endpoint of ``team`` is to serve. A model of another team is as missing as an
    unknown id, in the same words, so the answer tells nothing about other teams."""
    model = Model.objects.filter(team=team, pk=pk).select_related("team").first()
    if model is None:
        raise ValidationError({"model": f"No model with id {pk} in team {team.slug}."})
    return model


def endpoint_history(endpoint: Endpoint, limit: int = 20) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(object_type=Endpoint._meta.label_lower, object_id=str(endpoint.pk))
                .order_by("-id")[:limit])


@dataclass(frozen=True)
class VariantStatus:
    name: str
    version: int | None  # None: a label-bound endpoint whose label is not set
    weight: int
    servers: tuple[str, ...]  # names of the servers where this version is READY

    @property
    def ready(self) -> bool:
        return bool(self.servers)


@dataclass(frozen=True)
class EndpointStatus:
    variants: tuple[VariantStatus, ...]
    shadow: VariantStatus | None

    @property
    def state(self) -> str:
        """Serving when a variant that takes traffic has a READY server."""
        return SERVING if any(v.ready and v.weight > 0 for v in self.variants) else NO_READY_SERVER

    @property
    def serving(self) -> bool:
        return self.state == SERVING

    @property
    def total_weight(self) -> int:
        return sum(v.weight for v in self.variants)


def endpoint_statuses(endpoints: Iterable[Endpoint]) -> dict[int, EndpointStatus]:
    """Status per endpoint id: three queries whatever the number of endpoints (the endpoints' own
    variants must be prefetched, as endpoints_visible does)."""
    endpoints = list(endpoints)
    model_ids = {e.model_id for e in endpoints}
    if not endpoints:
        return {}
    ready: dict[tuple[int, int], list[str]] = {}
    targets = (
        PlacementTarget.objects.filter(model_id__in=model_ids, state=TargetState.READY, server__isnull=False)
        .values_list("model_id", "server_name", "placement__versions").order_by("server_name")
    )
    for model_id, server_name, versions in targets:
        for number in versions or []:
            names = ready.setdefault((model_id, number), [])
            if server_name not in names:
                names.append(server_name)
    labels = _label_versions([e for e in endpoints if e.kind == EndpointKind.LABEL])

    def variant(name, number, weight) -> VariantStatus:
        return VariantStatus(name, number, weight, tuple(ready.get((endpoint.model_id, number), ()) if number else ()))

    out = {}
    for endpoint in endpoints:
        if endpoint.kind == EndpointKind.LABEL:
            variants = (variant(endpoint.label, labels.get((endpoint.model_id, endpoint.label)), 1),)
        else:
            variants = tuple(variant(v.name, v.version.version, v.weight) for v in endpoint.variants.all())
        shadow = variant("shadow", endpoint.shadow_version.version, 0) if endpoint.shadow_version_id else None
        out[endpoint.pk] = EndpointStatus(variants=variants, shadow=shadow)
    return out


def endpoint_status(endpoint: Endpoint) -> EndpointStatus:
    return endpoint_statuses([endpoint])[endpoint.pk]


def _label_versions(endpoints: list[Endpoint]) -> dict[tuple[int, str], int]:
    """(model id, label) -> the version number it points at now; ``latest`` is the highest ready one."""
    if not endpoints:
        return {}
    models = {e.model_id for e in endpoints}
    names = {e.label for e in endpoints}
    found = {
        (model_id, name): number
        for model_id, name, number in VersionLabel.objects.filter(model_id__in=models, name__in=names)
        .values_list("model_id", "name", "version__version")
    }
    if LATEST in names:
        latest = (ModelVersion.objects.filter(model_id__in=models, status=VersionStatus.READY)
                  .values("model_id").annotate(top=Max("version")).values_list("model_id", "top"))
        found.update({(model_id, LATEST): top for model_id, top in latest})
    return found


# Gateway replicas, for the endpoints page: observations, read-only.

@dataclass(frozen=True)
class ReplicaRow:
    replica: GatewayReplica
    seconds_since_seen: int
    current: bool


def table_version() -> int:
    """The routing table's published version; 0 before the first publication."""
    return RoutingTableState.objects.filter(pk=1).values_list("version", flat=True).first() or 0


def gateway_replicas(limit: int = 200) -> tuple[int, list[ReplicaRow]]:
    version = table_version()
    now = timezone.now()
    rows = [
        ReplicaRow(r, max(0, int((now - r.last_seen_at).total_seconds())), r.table_version >= version)
        for r in GatewayReplica.objects.order_by("replica_id")[:limit]
    ]
    return version, rows
