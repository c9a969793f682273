"""Deployment fixtures for database tests (no Triton, no worker): vision/fraud-scorer v1-v3 ready
and v4 still registering, blue v1 READY on a CPU server (rows only, as a placement leaves them),
a label-bound endpoint following `stable` and a pinned one on v1, and helpers that move a
deployment through its states with `services.apply_event`, as the worker would.

Nothing here consumes the queue: inside a test's transaction `enqueue` (on commit) never sends.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.deployments import services
from controlplane.deployments.machine import Event, State
from controlplane.deployments.models import Deployment, DeploymentTransition
from controlplane.deployments.services.transitions import apply_event
from controlplane.endpoints.services import VariantSpec, endpoint_create
from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.quotas.models import Reservation
from controlplane.registry.labels import label_set
from controlplane.registry.models import VersionStatus
from tests.quotas.conftest import make_model, make_version

URL = "/api/v1/deployments/"
WORKER = Actor.system("worker")


def url(d=None, action: str | None = None) -> str:
    if d is None:
        return URL
    pk = d if isinstance(d, int) else d.pk
    return f"{URL}{pk}/" + (f"{action}/" if action else "")


@pytest.fixture
def versions(model):
    """vision/fraud-scorer v1-v3 ready, v4 still registering."""
    return [make_version(model, n) for n in (1, 2, 3)] + [make_version(model, 4, status=VersionStatus.REGISTERING)]


@pytest.fixture
def pool(db):
    return Pool.objects.create(name="cpu")


@pytest.fixture
def servers(pool):
    """Three CPU servers on a closed port: nothing ever answers, and nothing here calls them."""
    return [Server.objects.create(name=f"cpu-{i}", pool=pool, http_url="http://127.0.0.1:9") for i in (1, 2, 3)]


def place_ready(model, numbers: list[int], servers, state=TargetState.READY, rendered=None) -> Placement:
    """A placement of ``numbers`` with a target per server in ``state``, as the worker leaves it."""
    placement = Placement.objects.create(model=model, versions=sorted(numbers), rendered_config=rendered or {})
    now = timezone.now()
    for server in servers:
        PlacementTarget.objects.create(placement=placement, model=model, server=server, server_name=server.name,
                                       state=state, state_changed_at=now, loaded_at=now if state == TargetState.READY else None)
    return placement


@pytest.fixture
def blue(model, versions, servers):
    """v1 READY on cpu-1."""
    return place_ready(model, [1], servers[:1])


@pytest.fixture
def labels(model, versions):
    """stable -> v1 (blue of the label-bound endpoint), canary -> v2 (a green by label)."""
    label_set(actor=Actor.system(), model=model, name="stable", version=1, reason="seed")
    label_set(actor=Actor.system(), model=model, name="canary", version=2, reason="seed")


@pytest.fixture
def label_endpoint(team, model, labels, blue):
    """vision.scorer follows `stable`."""
    return endpoint_create(actor=Actor.system(), team=team, model=model, name="scorer", kind="label", label="stable")


@pytest.fixture
def pinned_endpoint(team, model, versions, blue):
    """vision.fraud: one variant, v1 at weight 100."""
    return endpoint_create(actor=Actor.system(), team=team, model=model, name="fraud", kind="pinned",
                           variants=[VariantSpec("a", 1, 100)])


@pytest.fixture
def foreign(other_team, outsider, pool):
    """speech/asr v1 READY with a label-bound endpoint speech.asr, and v2 to deploy."""
    model = make_model(other_team, "asr")
    for n in (1, 2):
        make_version(model, n)
    server = Server.objects.create(name="speech-1", pool=pool, http_url="http://127.0.0.1:9")
    place_ready(model, [1], [server])
    label_set(actor=Actor.system(), model=model, name="stable", version=1, reason="seed")
    endpoint = endpoint_create(actor=Actor.system(), team=other_team, model=model, name="asr", kind="label", label="stable")
    return endpoint


@pytest.fixture
def as_deployer(deployer):
    return Actor(user=deployer, source="api")


@pytest.fixture
def as_outsider(outsider):
    return Actor(user=outsider, source="api")


@pytest.fixture
def as_admin(platform_admin):
    return Actor(user=platform_admin, source="api")


@pytest.fixture
def tokens(api):
    """``tokens(user, scopes)`` is an API client with a fresh personal token of those scopes."""

    def make(user, scopes):
        _, secret = token_create(actor=Actor.system(), user=user, name=f"t-{'-'.join(scopes)}", scopes=scopes,
                                 expires_at=timezone.now() + timedelta(days=1))
        client = api()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


def body(endpoint="vision.scorer", **extra) -> dict:
    """A small valid request: canary to v2 with short bakes."""
    data = {"endpoint": endpoint, "version": 2, "strategy": "canary", "canary_percent": 10, "bake_s": 30,
            "reason": "ship v2"}
    if "label" in extra:
        data.pop("version")
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def create(actor, **extra) -> Deployment:
    return services.deployment_create(actor=actor, data=body(**extra))


# -- moving a deployment as the worker would -----------------------------------------------------


def _first_step(d):
    return {"step_index": 0, "traffic_percent": d.steps[0]["percent"], "failed_evaluations": 0}


def _baking(d):
    return {"step_started_at": timezone.now()}


_TO_SHIFTING = [(Event.BEGIN, None), (Event.OK, None), (Event.OK, None), (Event.OK, _first_step)]
_TO_ANALYZING = [*_TO_SHIFTING, (Event.OK, _baking), (Event.OK, None)]
ROUTES = {
    State.VALIDATING: [(Event.BEGIN, None)],
    State.PROVISIONING: [(Event.BEGIN, None), (Event.OK, None)],
    State.VERIFYING: [(Event.BEGIN, None), (Event.OK, None), (Event.OK, None)],
    State.SHIFTING: _TO_SHIFTING,
    State.BAKING: [*_TO_SHIFTING, (Event.OK, _baking)],
    State.ANALYZING: _TO_ANALYZING,
    State.PAUSED: [*_TO_ANALYZING, (Event.NO_DATA, None)],
    State.AWAITING_APPROVAL: [*_TO_ANALYZING, (Event.HOLD, None)],
    State.PROMOTING: [*_TO_ANALYZING, (Event.LAST_PASS, "promote")],
    State.SUCCEEDED: [*_TO_ANALYZING, (Event.LAST_PASS, "promote"), (Event.OK, None)],
    State.RETIRED: [*_TO_ANALYZING, (Event.LAST_PASS, "promote"), (Event.OK, None), (Event.RETIRE, None)],
    State.ROLLING_BACK: [*_TO_SHIFTING, (Event.ROLLBACK, None)],
    State.ROLLED_BACK: [*_TO_SHIFTING, (Event.ROLLBACK, None), (Event.OK, None)],
    State.ABORTED: [*_TO_SHIFTING, (Event.ABORT, None), (Event.OK, None)],
    State.FAILED: [(Event.BEGIN, None), (Event.ERROR, None), (Event.OK, None)],
    State.ROLLBACK_FAILED: [*_TO_SHIFTING, (Event.ROLLBACK, None), (Event.ERROR, None)],
}


def step(d: Deployment, event: Event, changes=None) -> Deployment:
    """One worker transition; fails loudly when the compare-and-set loses."""
    side = None
    if changes == "promote":
        changes, side = {"traffic_percent": 100, "failed_evaluations": 0}, services.promotion_write
    elif callable(changes):
        changes = changes(d)
    moved = apply_event(d, event, actor=WORKER, reason=f"test: {event.value}", changes=changes or {},
                        side_effects=side)
    assert moved is not None, f"{d.state} -{event.value}-> lost its compare-and-set"
    return moved


def drive(d: Deployment, state: State) -> Deployment:
    """Move a pending deployment to ``state`` along the worker's path."""
    assert d.state == State.PENDING, d.state
    for event, changes in ROUTES[State(state)]:
        d = step(d, event, changes)
    assert d.state == state
    return d


# -- what was written --------------------------------------------------------------------------


def events(action=None, **filters):
    query = AuditEvent.objects.order_by("id").filter(**filters)
    return list(query.filter(action=action) if action else query)


def counts() -> dict:
    """Every table a deployment request may write, to prove a refusal wrote nothing."""
    return {
        "deployments": Deployment.objects.count(), "transitions": DeploymentTransition.objects.count(),
        "audit": AuditEvent.objects.count(), "reservations": Reservation.objects.count(),
        "active_reservations": Reservation.objects.filter(released_at__isnull=True).count(),
        "placements": Placement.objects.count(), "targets": PlacementTarget.objects.count(),
    }


def surge_of(d: Deployment):
    return Reservation.objects.filter(holder=f"deployment {d.pk}", kind="deployment")
