"""An audit log written through the real services, for the API, page and export tests."""
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.accounts.services import token_create, token_revoke
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.fleet.services import pool_create
from controlplane.registry.services import model_create
from tests.conftest import TENSORS_IN, TENSORS_OUT


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The shared user fixtures hash passwords with PBKDF2 (half a second each); these tests
    never check a password, so a fast hasher keeps them quick."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Log:
    events: list[AuditEvent]  # oldest first

    def by_action(self, action: str) -> list[AuditEvent]:
        return [e for e in self.events if e.action == action]

    def ids(self, predicate=lambda e: True) -> set[int]:
        return {e.pk for e in self.events if predicate(e)}


@pytest.fixture
def log(team, other_team, deployer, outsider, platform_admin):
    """vision: two models (api and ui), a team token issued then revoked with a reason.
    speech: one model. Platform-wide (no team): a pool."""
    dana, otto, pat = (Actor(user=deployer, source="api"), Actor(user=outsider, source="api"), Actor(user=platform_admin, source="api"))
    model_create(actor=dana, team=team, name="fraud-scorer", backend="python", inputs=TENSORS_IN, outputs=TENSORS_OUT)
    model_create(actor=Actor(user=deployer, source="ui"), team=team, name="resnet50", backend="onnxruntime",
                 inputs=TENSORS_IN, outputs=TENSORS_OUT)
    model_create(actor=otto, team=other_team, name="whisper", backend="python", inputs=TENSORS_IN, outputs=TENSORS_OUT)
    pool_create(actor=pat, name="gpu-a100", description="A100 nodes")
    token, _secret = token_create(actor=pat, name="github-actions", scopes=["read"],
                                  expires_at=timezone.now() + timedelta(days=30), team=team)
    token_revoke(actor=pat, token=token, reason="Leaked in a CI log")
    return Log(events=list(AuditEvent.objects.select_related("team").order_by("id")))
