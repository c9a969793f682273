import pytest

from controlplane.accounts.models import Membership, Role, Team
from controlplane.audit.context import Actor
from controlplane.registry.models import Model
from tests.conftest import TENSORS_IN, TENSORS_OUT, _user


def unsaved_model(**overrides) -> Model:
    """A Model the pure validator and renderer can use without a database."""
    fields = {"team": Team(slug="vision"), "name": "fraud-scorer", "backend": "python", "max_batch_size": 8, "inputs": TENSORS_IN, "outputs": TENSORS_OUT}
    fields.update(overrides)
    return Model(**fields)


@pytest.fixture
def as_team_admin(team_admin):
    return Actor(user=team_admin, source="api", request_id="req-1")


@pytest.fixture
def outsider_admin(other_team):
    user = _user("olga")
    Membership.objects.create(user=user, team=other_team, role=Role.ADMIN)
    return user
