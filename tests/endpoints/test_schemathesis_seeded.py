"""Schemathesis over the endpoint operations with an endpoint to aim at, as its team's deployer.

tests/api/test_schemathesis.py covers every operation with a world that has no endpoint, so its
cases on /api/v1/endpoints/{id}/ mostly meet a 404; here most cases reach the endpoint and the
services' checks. Same checks: no 5xx, and every response matches the schema.
"""
import zlib
from datetime import timedelta

import pytest
from django.utils import timezone
from schemathesis.config import SchemathesisConfig

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.endpoints import services
from controlplane.registry.labels import label_set
from tests.api.openapi_checks import CHECKS, in_process_requests, load_schema
from tests.endpoints.conftest import V, make_servers, place_ready
from tests.quotas.conftest import make_model, make_version

CONFIG = SchemathesisConfig.from_dict({
    "suppress-health-check": ["all"],
    "generation": {"max-examples": 40, "deterministic": True, "database": "none", "no-shrink": True},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
})

schema = load_schema(CONFIG).include(path_regex=r"^/api/v1/endpoints/")


@pytest.fixture
def seeded(db, team, deployer, pool):
    system = Actor.system()
    model = make_model(team, "fraud-scorer")
    for number in (1, 2, 3):
        make_version(model, number)
    label_set(actor=system, model=model, name="stable", version=1, reason="seed")
    place_ready(model, [1, 2], make_servers(pool, "triton-1"))
    endpoint = services.endpoint_create(actor=system, team=team, model=model, name="fraud", kind="pinned",
                                        variants=[V("a", 1, 90), V("b", 2, 10)])
    _, secret = token_create(actor=Actor(user=deployer, source="api"), user=deployer, name="fuzz", scopes=["deploy"],
                             expires_at=timezone.now() + timedelta(days=1))
    return {"token": secret, "id": str(endpoint.pk), "body": {"team": team.slug, "model": model.pk}}


@schema.parametrize()
def test_endpoint_operations(case, seeded):
    if zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode()) % 4:
        if "id" in (case.path_parameters or {}):
            case.path_parameters["id"] = seeded["id"]
        if isinstance(case.body, dict):
            case.body.update({k: v for k, v in seeded["body"].items() if k in case.body})
    with in_process_requests():
        case.call_and_validate(headers={"Authorization": f"Bearer {seeded['token']}"}, checks=CHECKS)
