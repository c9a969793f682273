"""Deployment rows written directly, as a worker would have left them: for page tests that need
many deployments in given states (the services' own tests drive real ones through the machine).
Nothing here is a way to change a deployment."""
from datetime import timedelta

from django.utils import timezone

from controlplane.deployments.models import (
    Deployment,
    DeploymentTransition,
    GateEvaluation,
)
from controlplane.deployments.spec import Gates
from controlplane.endpoints.models import Endpoint, EndpointKind
from tests.quotas.conftest import make_model, make_version

STEPS = [{"percent": 10, "bake_s": 60}, {"percent": 50, "bake_s": 60}, {"percent": 100, "bake_s": 0}]


def endpoint(team, name: str) -> Endpoint:
    """A label-bound endpoint on a model of its own with v1 and v2."""
    model = make_model(team, f"{name}-model")
    make_version(model, 1), make_version(model, 2)
    return Endpoint.objects.create(team=team, name=name, model=model, kind=EndpointKind.LABEL, label="stable")


def deployment(ep: Endpoint, *, state: str, step_index: int = -1, traffic: int = 0, gates: Gates | None = None,
               start_at=None, created_by=None, step_started_at=None, status_text: str = "") -> Deployment:
    versions = {v.version: v for v in ep.model.versions.all()}
    now = timezone.now()
    return Deployment.objects.create(
        team=ep.team, endpoint=ep, model=ep.model, blue_version=versions[1], green_version=versions[2],
        strategy="linear", steps=STEPS, placement_mode="same_servers", gates=(gates or Gates()).as_dict(),
        state=state, state_changed_at=now, step_index=step_index, traffic_percent=traffic, start_at=start_at,
        step_started_at=step_started_at, created_by=created_by, status_text=status_text,
        plan={"phases": [], "projected_s": 180.0, "quota": 0, "held_now": 0, "peak": 0, "surge": 0},
    )


def history(d: Deployment, n: int) -> None:
    """``n`` transitions, the last one into the deployment's state."""
    now = timezone.now()
    DeploymentTransition.objects.bulk_create([
        DeploymentTransition(deployment=d, from_state="shifting" if i else "", to_state=d.state if i == n - 1 else "baking",
                             event="ok" if i else "create", actor_name="worker", source="worker",
                             detail={"traffic_percent": d.traffic_percent}, at=now - timedelta(seconds=n - i))
        for i in range(n)
    ])


def evaluations(d: Deployment, n: int, *, gate: str = "error_ratio", value: float = 0.01, limit: float = 0.05,
                verdict: str = "pass", step_index: int | None = None) -> list[GateEvaluation]:
    now = timezone.now()
    return GateEvaluation.objects.bulk_create([
        GateEvaluation(deployment=d, step_index=d.step_index if step_index is None else step_index, gate=gate,
                       value=value, limit=limit, requests=500 + i, window_s=60, verdict=verdict, detail="",
                       at=now - timedelta(seconds=n - i))
        for i in range(n)
    ])
