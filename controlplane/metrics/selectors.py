"""What Prometheus should scrape, read from the database: two queries, whatever the fleet's size."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from controlplane.endpoints.models import GatewayReplica
from controlplane.fleet.models import Server
from controlplane.metrics import targets
from controlplane.metrics.series import KIND_GATEWAY, KIND_TRITON

# A replica that has not reported for this long is gone (it reports every 2 s).
GATEWAY_SEEN_WITHIN = timedelta(minutes=5)


def scrape_target_groups(*, kind: str | None = None) -> list[dict]:
    """http_sd target groups: every server with a metrics URL and every gateway address that
    reported within GATEWAY_SEEN_WITHIN; `kind` ("triton" or "gateway") keeps one of the two."""
    groups: list[dict] = []
    if kind in (None, KIND_TRITON):
        rows = (Server.objects.exclude(metrics_url="").order_by("name")
                .values_list("name", "pool__name", "gpu_type", "labels", "metrics_url"))
        groups += targets.triton_groups(
            {"name": n, "pool": p, "gpu_type": g, "labels": lab, "metrics_url": u} for n, p, g, lab, u in rows)
    if kind in (None, KIND_GATEWAY):
        since = timezone.now() - GATEWAY_SEEN_WITHIN
        rows = (GatewayReplica.objects.filter(last_seen_at__gte=since).exclude(address="")
                .values_list("replica_id", "address"))
        groups += targets.gateway_groups(rows)
    return groups
