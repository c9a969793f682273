"""The control plane and the gateway together, on the real fleet: an endpoint made through the
services is served by real gateway processes that get their table from the live control plane
(pushed through Redis to one, polled over HTTP by the other), report in, follow a weight change
and stop honouring a revoked token.
"""
import time
from datetime import timedelta

import numpy as np
import pytest
import redis
import tritonclient.http as triton_http
from django.conf import settings as django_settings
from django.utils import timezone
from tritonclient.utils import InferenceServerException

from controlplane.accounts.models import ApiToken
from controlplane.accounts.services import token_create, token_revoke
from controlplane.audit.context import Actor
from controlplane.devstack.testmodels import python_model_files
from controlplane.endpoints.models import GatewayReplica, RoutingTableState
from controlplane.endpoints.publication import REDIS_KEY, REDIS_VERSION_KEY
from controlplane.endpoints.services import VariantSpec, endpoint_create, endpoint_update
from controlplane.fleet.models import Pool, Server
from controlplane.placements import services as placements
from controlplane.registry.labels import label_set
from controlplane.registry.services import model_create, version_register
from tests.conftest import TENSORS_IN, TENSORS_OUT
from tests.gateway.gateway_support import GatewayProcess, unload_model
from workers.placements import apply_placement

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KEY = "end-to-end-gateway-key"
TRITON_NAME = "vision.e2e-scorer"


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def infer(url, *, token=None, version="", user=None):
    """One request through a gateway with an unchanged tritonclient; returns VERSION."""
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    try:
        tensor = triton_http.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if user:
            headers["X-User-Id"] = user
        result = client.infer("vision.e2e-scorer", [tensor], model_version=version, headers=headers)
        assert result.as_numpy("OUTPUT0").tolist() == [[2.0] * 4]
        return int(result.as_numpy("VERSION")[0][0])
    finally:
        client.close()


@pytest.fixture
def placed(s3, team, deployer, triton_fleet):
    """vision/e2e-scorer v1 and v2, side by side and READY on both fleet servers."""
    actor = Actor(user=deployer, source="api")
    model = model_create(actor=actor, team=team, name="e2e-scorer", backend="python", max_batch_size=8,
                         inputs=TENSORS_IN, outputs=TENSORS_OUT)
    for number in (1, 2):
        version_register(actor=actor, model=model, version=number, contents=python_model_files(version=number))
    label_set(actor=actor, model=model, name="stable", version=1, reason="e2e")
    label_set(actor=actor, model=model, name="canary", version=2, reason="e2e")
    pool = Pool.objects.get_or_create(name="cpu")[0]
    servers = [Server.objects.create(name=f"fleet-{i}", pool=pool, http_url=t.http_url) for i, t in enumerate(triton_fleet)]
    placement, _ = placements.placement_create(actor=actor, model=model, versions=[1, 2], servers=servers)
    assert apply_placement(placement.pk) == {"ready": 2}
    yield actor, model
    unload_model(triton_fleet, TRITON_NAME)


def test_endpoint_served_by_gateways_that_follow_the_control_plane(placed, team, team_admin, live_server, settings, tmp_path):
    actor, model = placed
    settings.SWITCHYARD_GATEWAY_KEY = KEY
    assert django_settings.REDIS_URL, "the test suite runs with Redis (scripts/test sets REDIS_URL)"
    # This test database starts again from version 1; a table an earlier run left in Redis would
    # look newer (the beat task's repair_redis() mends that in production, within seconds).
    redis.Redis.from_url(django_settings.REDIS_URL).delete(REDIS_KEY, REDIS_VERSION_KEY)
    admin = Actor(user=team_admin, source="api")
    expires = timezone.now() + timedelta(days=1)
    _, infer_token = token_create(actor=admin, team=team, name="clients", scopes=["infer"], expires_at=expires)
    endpoint = endpoint_create(
        actor=actor, team=team, name="e2e-scorer", model=model, kind="pinned", access="token",
        sticky_header="X-User-Id",
        variants=[VariantSpec("canary", 2, 0), VariantSpec("stable", 1, 100)],
    )
    published = RoutingTableState.objects.get(pk=1).version

    # `pushed` polls only every 30 s, so a change reaching it quickly came through Redis.
    source = ["--control-plane", live_server.url, "--key", KEY]
    pushed = GatewayProcess([*source, "--replica-id", "pushed", "--redis", django_settings.REDIS_URL, "--poll-interval", "30"],
                            tmp_path / "pushed.log", workers=2)
    polled = GatewayProcess([*source, "--replica-id", "polled", "--poll-interval", "0.2"], tmp_path / "polled.log")
    gateways = [pushed, polled]
    try:
        for gateway in gateways:
            wait_for(lambda: _ready(gateway.url), 15, "the gateway to hold a table")
            # The token is checked at the gateway, against hashes from the table.
            assert infer(gateway.url, token=infer_token) == 1
            assert infer(gateway.url, token=infer_token, version="canary") == 2  # a label in the URL
            with pytest.raises(InferenceServerException) as refused:
                infer(gateway.url)
            assert refused.value.status() == "401"

        # Every replica (each worker of `pushed`, and `polled`) reports the table it serves.
        wait_for(lambda: _replicas_at(published) >= 3, 10, "three replicas to report the current table")
        assert {r.replica_id.split("/")[0] for r in GatewayReplica.objects.all()} == {"pushed", "polled"}

        # A weight change reaches all traffic on every replica. The pushed gateway gets it through
        # Redis; the polled one through its HTTP poll.
        changed = time.monotonic()
        endpoint_update(actor=actor, endpoint=endpoint,
                        variants=[VariantSpec("canary", 2, 100), VariantSpec("stable", 1, 0)])
        new_version = RoutingTableState.objects.get(pk=1).version
        assert new_version > published
        for gateway in gateways:
            wait_for(lambda: all(infer(gateway.url, token=infer_token, user=f"u{i}") == 2 for i in range(8)), 5,
                     f"{gateway.url} to route everything to v2")
        assert time.monotonic() - changed < 5  # well before `pushed` polls again
        wait_for(lambda: _replicas_at(new_version) >= 3, 10, "every replica to report the new table")

        # A revoked token stops working at the gateway within seconds.
        token_revoke(actor=admin, token=ApiToken.objects.get(name="clients"), reason="e2e")
        for gateway in gateways:
            wait_for(lambda: _refused(gateway.url, infer_token), 5, "the revoked token to be refused")
    finally:
        for gateway in gateways:
            gateway.stop()


def _ready(url):
    try:
        return triton_http.InferenceServerClient(url.removeprefix("http://")).is_server_ready()
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _replicas_at(version):
    return GatewayReplica.objects.filter(table_version__gte=version).count()


def _refused(url, token):
    try:
        infer(url, token=token)
    except InferenceServerException as e:
        return e.status() == "401"
    return False
