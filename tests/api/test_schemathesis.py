"""Schemathesis over every API operation, as a platform admin and as a team deployer.

The schema is loaded from the WSGI app and every request runs in process, inside the test's
transaction on the real database, so one operation's writes never leak into the next test.
Phases: the schema's examples, coverage (boundary and negative values) and fuzzing. Checks: no
5xx, and every response (status code, content type, headers, body) matches the schema.

Path parameters and a few body fields are aimed at seeded objects for most cases (chosen from
the case's own content, so a failure replays), so the fuzzer gets past the 404.
"""
import zlib
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone
from schemathesis.config import SchemathesisConfig

from controlplane.accounts.models import Membership, Role
from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.fleet.models import Pool, Server
from controlplane.placements.services import placement_create
from controlplane.quotas.services import quota_set
from controlplane.registry.labels import label_set
from controlplane.serving.services import serving_config_save
from tests.conftest import TENSORS_IN, TENSORS_OUT, _user
from tests.api.openapi_checks import CHECKS, in_process_requests, load_schema
from tests.quotas.conftest import make_model, make_version

CONFIG = SchemathesisConfig.from_dict({
    "suppress-health-check": ["all"],
    "generation": {"max-examples": 25, "deterministic": True, "database": "none", "no-shrink": True},
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
})

schema = load_schema(CONFIG)

CLOSED = "http://127.0.0.1:9"  # nothing listens: a probe fails at once


@dataclass
class World:
    tokens: dict[str, str] = field(default_factory=dict)
    path: dict[str, dict[str, str]] = field(default_factory=dict)  # actor -> parameter -> value
    body: dict[str, object] = field(default_factory=dict)


def _token(user, scope: str, name: str):
    token, secret = token_create(
        actor=Actor(user=user, source="api"), user=user, name=name, scopes=[scope],
        expires_at=timezone.now() + timedelta(days=30),
    )
    return token, secret


@pytest.fixture
def world(db, s3, settings, team, other_team, platform_admin, deployer, viewer, outsider) -> World:
    """A team with a model, two versions, labels, a serving config, a placement on a server and
    a quota; another team's model; a spare token per actor (so revoking it keeps the actor in)."""
    settings.SWITCHYARD_TRITON_TIMEOUT_SECONDS = 0.5
    system = Actor(user=None, source="system")
    model = make_model(team, "fraud-scorer")
    for number in (1, 2):
        make_version(model, number)
    label_set(actor=system, model=model, name="stable", version=1, reason="seed")
    serving_config_save(actor=system, model=model, spec={"instance_group": [{"kind": "KIND_CPU", "count": 1}]}, reason="seed")
    pool = Pool.objects.create(name="cpu")
    server = Server.objects.create(name="triton-1", pool=pool, http_url=CLOSED)
    Server.objects.create(name="triton-2", pool=pool, http_url=CLOSED)
    placement, _ = placement_create(actor=system, model=model, versions=[1], servers=[server])
    quota_set(actor=system, team=team, gpus=4, reason="seed")
    make_version(make_model(other_team, "asr"), 1)
    Membership.objects.create(user=_user("nora"), team=other_team, role=Role.VIEWER)

    world = World()
    common = {
        "model_pk": str(model.pk), "version": "1", "revision": "1", "slug": team.slug, "team_slug": team.slug,
        "username": viewer.username,
    }
    by_path = {
        "/api/v1/models/{id}/": {"id": str(model.pk)},
        "/api/v1/models/{model_pk}/labels/{name}/": {"name": "stable"},
        "/api/v1/pools/{name}/": {"name": Pool.objects.create(name="empty").name},  # deletable
        "/api/v1/servers/{id}/": {"id": str(server.pk)},
        "/api/v1/servers/{id}/probe/": {"id": str(server.pk)},
        "/api/v1/placements/{id}/": {"id": str(placement.pk)},
        "/api/v1/placements/{id}/retry/": {"id": str(placement.pk)},
        "/api/v1/audit/events/{id}/": {"id": str(AuditEvent.objects.filter(team=team).latest("id").pk)},
    }
    for name, user, scope in (("platform_admin", platform_admin, "admin"), ("team_deployer", deployer, "deploy")):
        _, world.tokens[name] = _token(user, scope, "fuzz")
        spare, _ = _token(user, scope, "spare")
        world.path[name] = {"common": common, **by_path,
                            "/api/v1/tokens/{id}/": {"id": str(spare.pk)},
                            "/api/v1/tokens/{id}/revoke/": {"id": str(spare.pk)}}
    world.body = {"team": team.slug, "model": model.pk, "servers": ["triton-2"], "pool": pool.name,
                  "username": "nora", "versions": [2], "inputs": TENSORS_IN, "outputs": TENSORS_OUT,
                  "http_url": CLOSED}
    return world


@pytest.fixture(params=["platform_admin", "team_deployer"])
def actor(request) -> str:
    return request.param


def _aim(case, world: World, actor: str) -> None:
    """Point most cases at seeded objects. The choice hangs on the case's content, so it replays."""
    if zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode()) % 4 == 0:
        return
    known = world.path[actor]
    for name in case.path_parameters or {}:
        value = known.get(case.operation.path, {}).get(name, known["common"].get(name))
        if value is not None:
            case.path_parameters[name] = value
    if isinstance(case.body, dict):
        for name, value in world.body.items():
            if name in case.body:
                case.body[name] = value


@schema.parametrize()
def test_api(case, world, actor):
    _aim(case, world, actor)
    with in_process_requests():
        case.call_and_validate(headers={"Authorization": f"Bearer {world.tokens[actor]}"}, checks=CHECKS)
