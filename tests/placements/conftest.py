"""Placement fixtures: servers that refuse connections (for tests that need no Triton), and
registered real tritonservers for the integration tests."""
import pytest

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import PlacementTarget
from controlplane.serving.models import ServingConfig
from tests.quotas.conftest import make_model, make_version

CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused at once


@pytest.fixture
def pool(db):
    return Pool.objects.create(name="cpu")


@pytest.fixture
def offline_servers(pool):
    """Two registered servers with nothing behind them."""
    return [Server.objects.create(name=f"triton-{i}", pool=pool, http_url=CLOSED) for i in range(2)]


@pytest.fixture
def gpu_servers(db):
    gpu_pool = Pool.objects.create(name="a100")
    return [
        Server.objects.create(name=f"gpu-{i}", pool=gpu_pool, http_url=CLOSED, gpu_type="A100", gpu_count=8)
        for i in range(2)
    ]


@pytest.fixture
def versions(model):
    """vision/fraud-scorer v1 and v2, ready (rows only; no artifacts)."""
    return [make_version(model, 1), make_version(model, 2)]


@pytest.fixture
def as_deployer(deployer):
    return Actor(user=deployer, source="api")


@pytest.fixture
def as_admin(platform_admin):
    return Actor(user=platform_admin, source="api")


def make_config(model, revision, spec, user=None) -> ServingConfig:
    """A serving config revision as the serving app stores it (validated spec)."""
    return ServingConfig.objects.create(model=model, revision=revision, spec=spec, created_by=user)


def events(action=None, **filters):
    query = AuditEvent.objects.order_by("id").filter(**filters)
    if action:
        query = query.filter(action=action)
    return list(query)


def states(placement) -> dict[str, str]:
    return dict(PlacementTarget.objects.filter(placement=placement).values_list("server_name", "state"))


__all__ = ["make_model", "make_version", "make_config", "events", "states", "CLOSED"]
