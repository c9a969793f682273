import pytest

from controlplane.audit.context import Actor
from controlplane.fleet.models import Pool, Server
from controlplane.registry.models import Model, ModelVersion, VersionStatus
from tests.conftest import TENSORS_IN, TENSORS_OUT


def make_version(model: Model, number: int, status: str = VersionStatus.READY) -> ModelVersion:
    """A registered version without S3: quotas only need the row."""
    return ModelVersion.objects.create(
        model=model, version=number, status=status, artifact_uri=f"s3://bucket/repo/{model.triton_name}/{number}/",
        checksum="sha256:" + "0" * 64, size_bytes=1, files=[{"path": "model.py", "size": 1, "sha256": "0" * 64}],
    )


def make_model(team, name: str) -> Model:
    return Model.objects.create(team=team, name=name, backend="python", inputs=TENSORS_IN, outputs=TENSORS_OUT)


@pytest.fixture
def version(model):
    """vision/fraud-scorer v3, ready."""
    return make_version(model, 3)


@pytest.fixture
def server(db):
    pool = Pool.objects.create(name="gpu-a100")
    return Server.objects.create(name="gpu-1", pool=pool, http_url="http://127.0.0.1:9", gpu_type="A100", gpu_count=8)


@pytest.fixture
def as_admin(platform_admin):
    return Actor(user=platform_admin, source="api")


@pytest.fixture
def as_deployer(deployer):
    return Actor(user=deployer, source="api")
