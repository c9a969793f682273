"""Fleet fixtures: a pool, servers with nothing behind them (connection refused at once), and a
model of team vision placed on one of them."""
import pytest

from controlplane.audit.context import Actor
from controlplane.fleet.models import Pool, Server
from controlplane.placements.services import placement_create
from tests.quotas.conftest import make_model, make_version

CLOSED = "http://127.0.0.1:9"


@pytest.fixture
def pool(db):
    return Pool.objects.create(name="cpu", description="CPU servers")


@pytest.fixture
def server(pool):
    return Server.objects.create(name="triton-1", pool=pool, http_url=CLOSED)


@pytest.fixture
def other_server(pool):
    return Server.objects.create(name="triton-2", pool=pool, http_url=CLOSED)


@pytest.fixture
def placed(team, deployer, server):
    """vision/fraud-scorer v1 placed on triton-1 only."""
    model = make_model(team, "fraud-scorer")
    make_version(model, 1)
    placement, _ = placement_create(actor=Actor(user=deployer, source="api"), model=model, versions=[1], servers=[server])
    return placement


@pytest.fixture
def as_admin(platform_admin):
    return Actor(user=platform_admin, source="api")
