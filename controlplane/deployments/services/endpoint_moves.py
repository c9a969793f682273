"""What a deployment changes on its endpoint besides traffic: the label (or the pinned variants).

Both run inside the transaction of the transition that needs them. Promoting moves the label to
green; leaving promoting or succeeded for rolling back moves it back to blue, as it was before the
deployment, so the endpoint never follows a green that is about to be unloaded.
"""
from __future__ import annotations

from controlplane.audit.context import Actor
from controlplane.deployments.models import Deployment
from controlplane.endpoints.models import Endpoint, EndpointKind


def promotion_write(d: Deployment) -> None:
    """Inside the transaction that promotes: the label moves to green (a label-bound endpoint), or
    the pinned endpoint's variants become green alone. Traffic is 100% green in the same update."""
    from controlplane.endpoints.services import VariantSpec, endpoint_update
    from controlplane.registry.labels import label_set

    system = Actor.system("worker")
    endpoint = Endpoint.objects.select_related("team", "model__team").get(pk=d.endpoint_id)
    why = f"deployment {d.pk} promoted v{d.green_version.version}"
    if endpoint.kind == EndpointKind.LABEL:
        label_set(actor=system, model=endpoint.model, name=endpoint.label, version=d.green_version.version, reason=why)
    else:
        endpoint_update(actor=system, endpoint=endpoint,
                        variants=[VariantSpec(name=f"v{d.green_version.version}", version=d.green_version.version, weight=100)])


def rollback_write(d: Deployment) -> None:
    """Inside the transaction of a fast rollback after success: the label (or the pinned variants)
    goes back to blue, as it was before the deployment."""
    from controlplane.endpoints.services import VariantSpec, endpoint_update
    from controlplane.registry.labels import label_set

    system = Actor.system("worker")
    endpoint = Endpoint.objects.select_related("team", "model__team").get(pk=d.endpoint_id)
    why = f"deployment {d.pk} rolled back to v{d.blue_version.version}"
    if endpoint.kind == EndpointKind.LABEL:
        label_set(actor=system, model=endpoint.model, name=endpoint.label, version=d.blue_version.version, reason=why)
    elif d.plan.get("blue_variants"):
        endpoint_update(actor=system, endpoint=endpoint,
                        variants=[VariantSpec(**v) for v in d.plan["blue_variants"]])
