"""No race can exceed a quota: 20 concurrent HTTP requests to place a GPU model, each on its own
1-GPU server, against a live server (one thread per request, each with its own database
connection), with room for 8 devices."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier

import pytest
import requests
from django.utils import timezone

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.celery import app
from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import Placement
from controlplane.quotas.selectors import team_devices_held
from controlplane.quotas.services import quota_set
from tests.placements.conftest import make_config
from tests.quotas.conftest import make_version

REQUESTS = 20
QUOTA = 8


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_placements_never_exceed_the_quota(live_server, model, deployer, platform_admin):
    make_version(model, 1)
    make_config(model, 1, {"instance_group": [{"kind": "KIND_GPU", "count": 1}]})
    pool = Pool.objects.create(name="a100")
    for i in range(REQUESTS):
        Server.objects.create(name=f"gpu-{i}", pool=pool, http_url="http://127.0.0.1:9", gpu_type="A100", gpu_count=1)
    quota_set(actor=Actor(user=platform_admin, source="api"), team=model.team, gpus=QUOTA)
    _, secret = token_create(actor=Actor(user=deployer, source="api"), user=deployer, name="ci", scopes=["deploy"],
                             expires_at=timezone.now() + timedelta(days=1))
    start = Barrier(REQUESTS)

    def place(i: int):
        start.wait()
        return requests.post(
            f"{live_server.url}/api/v1/placements/",
            json={"model": model.pk, "versions": [1], "servers": [f"gpu-{i}"]},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=60,
        )

    try:
        with ThreadPoolExecutor(max_workers=REQUESTS) as pool_:
            responses = list(pool_.map(place, range(REQUESTS)))
    finally:
        app.control.purge()  # the apply tasks queued for the placements that succeeded
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * QUOTA + [409] * (REQUESTS - QUOTA), codes
    refusal = next(r.json() for r in responses if r.status_code == 409)
    assert "gpus" in refusal["fields"] and f"of {QUOTA} GPUs" in refusal["detail"]
    assert len(team_devices_held(model.team)) == QUOTA
    assert Placement.objects.count() == QUOTA
    assert AuditEvent.objects.filter(action="placement.create").count() == QUOTA
