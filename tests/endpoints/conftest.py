"""Endpoint fixtures: vision/fraud-scorer with ready versions 1-4, a `stable` label on v1, and
helpers that make a version READY on servers the way a placement does (rows only, no Triton)."""
import pytest
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.endpoints import services
from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.registry.labels import label_set
from tests.quotas.conftest import make_model, make_version

V = services.VariantSpec


@pytest.fixture
def versions(model):
    """vision/fraud-scorer v1-v4, ready."""
    return [make_version(model, n) for n in (1, 2, 3, 4)]


@pytest.fixture
def stable(model, versions):
    label_set(actor=Actor.system(), model=model, name="stable", version=1, reason="seed")
    return "stable"


@pytest.fixture
def as_deployer(deployer):
    return Actor(user=deployer, source="api")


@pytest.fixture
def as_viewer(viewer):
    return Actor(user=viewer, source="api")


@pytest.fixture
def as_outsider(outsider):
    return Actor(user=outsider, source="api")


@pytest.fixture
def foreign_model(other_team):
    """speech/asr v1: another team's model that vision must never learn of."""
    model = make_model(other_team, "asr")
    make_version(model, 1)
    return model


@pytest.fixture
def pool(db):
    return Pool.objects.create(name="cpu")


def make_servers(pool, *names):
    return [Server.objects.create(name=name, pool=pool, http_url="http://127.0.0.1:9") for name in names]


def place_ready(model, versions: list[int], servers, state=TargetState.READY) -> Placement:
    """A placement of ``versions`` with a target per server in ``state`` (READY by default)."""
    placement = Placement.objects.create(model=model, versions=sorted(versions), rendered_config={})
    now = timezone.now()
    for server in servers:
        PlacementTarget.objects.create(placement=placement, model=model, server=server, server_name=server.name,
                                       state=state, state_changed_at=now)
    return placement


def pinned(actor, team, model, name="fraud", variants=None, **extra):
    return services.endpoint_create(
        actor=actor, team=team, model=model, name=name, kind="pinned",
        variants=variants if variants is not None else [V("a", 1, 90), V("b", 2, 10)], **extra)


def events(action=None):
    query = AuditEvent.objects.order_by("id")
    return list(query.filter(action=action) if action else query)
