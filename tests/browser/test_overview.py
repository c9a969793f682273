"""The overview in Debian's chromium: a canary in progress with its progress bar and its gates
against their limits, a scheduled deployment, fleet health with a gateway replica behind, the GPU
quota bar and the recent audit events, for the signed-in person's team only; the deployments part
follows the rollout without a reload. The deployments are created through the services and moved
as the worker would (tests/deployments/conftest.py); gate evaluations are written as the engine
writes them."""
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from controlplane.audit.context import Actor
from controlplane.deployments.machine import Event, State
from controlplane.endpoints.models import GatewayReplica, RoutingTableState
from controlplane.fleet.models import Server
from controlplane.quotas.services import quota_reserve, quota_set
from tests.deployments.conftest import (  # noqa: F401 - fixtures
    as_deployer,
    as_outsider,
    blue,
    create,
    drive,
    foreign,
    label_endpoint,
    labels,
    pinned_endpoint,
    pool,
    servers,
    step,
    versions,
)
from tests.pages import rows

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("purge_queued_tasks")]


def _csp_violations(page) -> list[str]:
    found: list[str] = []
    page.on("console", lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None)
    return found


def width_ratio(inner, outer) -> float:
    return inner.bounding_box()["width"] / outer.bounding_box()["width"]


@pytest.fixture
def fleet(servers, pool):  # noqa: F811 (imported fixtures)
    """cpu-1 up, cpu-2 down, cpu-3 up and draining, a GPU server up."""
    now = timezone.now()
    Server.objects.filter(name__in=["cpu-1", "cpu-3"]).update(status="up")
    Server.objects.filter(name="cpu-2").update(status="down")
    Server.objects.filter(name="cpu-3").update(draining_since=now)
    return Server.objects.create(name="gpu-1", pool=pool, http_url="http://127.0.0.1:9", gpu_count=8, status="up")


def gateway_workers():
    """Two gateway workers reporting in: one serves the table published last, one the table before."""
    now = timezone.now()
    version = RoutingTableState.objects.get(pk=1).version
    GatewayReplica.objects.create(replica_id="gw-a-1", address="10.0.0.5:8080", table_version=version, last_seen_at=now)
    GatewayReplica.objects.create(replica_id="gw-a-2", address="10.0.0.5:8080", table_version=version - 1, last_seen_at=now)


def test_the_overview_shows_what_moves_and_what_it_costs(
        ui, label_endpoint, pinned_endpoint, foreign, as_deployer, as_outsider, platform_admin, team, fleet):  # noqa: F811
    # A canary analyzing its 10% step; its error rate judged twice, the latest 1.2% against 5%.
    d = drive(create(as_deployer, bake_s=30, reason="ship v2 to the scorer"), State.ANALYZING)
    rows.evaluations(d, 1, value=0.004)
    rows.evaluations(d, 1, value=0.012)
    later = create(as_deployer, endpoint="vision.fraud", version=3, start_at=(timezone.now() + timedelta(hours=2)).isoformat())
    theirs = create(as_outsider, endpoint="speech.asr", version=2)  # another team's: never on dana's overview
    # Quota: 8 GPUs, 3 held by fraud-scorer v1 on the GPU server.
    quota_set(actor=Actor(user=platform_admin, source="api"), team=team, gpus=8)
    quota_reserve(actor=as_deployer, team=team, kind="placement", version=d.blue_version, holder="", server=fleet,
                  devices=[0, 1, 2])
    gateway_workers()  # after the changes above, each of which published a routing table

    page = ui.page
    violations = _csp_violations(page)
    ui.sign_in("dana")  # lands on the overview
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()

    # Fleet health
    health = page.locator("section.ov-fleet")
    tiles = {k: health.locator(f'[data-count="{k}"] .num') for k in ("total", "up", "down", "draining", "replicas")}
    expect(tiles["total"]).to_have_text("5")  # the three CPU servers, speech's server and the GPU server
    expect(tiles["up"]).to_have_text("3")
    expect(tiles["down"]).to_have_text("1")
    expect(tiles["draining"]).to_have_text("1")
    expect(tiles["replicas"]).to_have_text("2")
    expect(health.locator('[data-count="replicas"]')).to_contain_text("1 behind")
    expect(health.locator(".ov-lag")).to_contain_text("1 live replica still serves an older table")
    expect(health.locator('tr[data-replica="gw-a-2"]')).to_contain_text("1 version behind")
    expect(health.locator('tr[data-replica="gw-a-1"]')).to_contain_text("current")

    # The canary: its progress bar, its traffic and its gates against their limits
    moving = page.locator("section.ov-deployments")
    row = moving.locator(f'li[data-deployment="{d.pk}"]')
    expect(row.locator("[data-state]")).to_have_text("analyzing")
    expect(row.locator("[data-traffic]")).to_have_text("10% to green")
    bar = row.get_by_role("progressbar", name=f"Progress of deployment {d.pk}")
    expect(bar).to_have_attribute("aria-valuenow", "82")  # the deployment page's count: step 1 of 1, gates judged
    assert width_ratio(bar.locator(".ov-progress-fill"), bar) == pytest.approx(0.82, abs=0.02)  # sized under the CSP
    expect(row.get_by_role("link", name=f"#{d.pk} vision.scorer")).to_have_attribute("href", f"/deployments/{d.pk}/")
    error = row.locator('tr[data-gate="error_ratio"]')
    expect(error.locator(".ov-gate-now")).to_have_text("1.20%")
    expect(error.locator(".ov-gate-value")).to_contain_text("≤ 5.00%")
    expect(error.locator(".ov-verdict")).to_contain_text("pass")
    meter = error.locator(".ov-meter")
    assert width_ratio(meter.locator(".ov-meter-fill"), meter) == pytest.approx(0.012 / 0.05 * 0.8, abs=0.02)
    limit_x = meter.locator(".ov-meter-limit").bounding_box()["x"] - meter.bounding_box()["x"]
    assert limit_x / meter.bounding_box()["width"] == pytest.approx(0.8, abs=0.02)
    expect(row.locator('tr[data-gate="guard"] .ov-verdict')).to_contain_text("armed")
    scheduled = moving.locator(f'table.ov-scheduled tr[data-deployment="{later.pk}"]')
    expect(scheduled).to_contain_text("vision.fraud")
    expect(scheduled).to_contain_text("v1 → v3")
    expect(moving.locator(f'[data-deployment="{theirs.pk}"]')).to_have_count(0)
    expect(moving).not_to_contain_text("speech.asr")

    # Quota and the audit log's latest
    quota = page.locator('section.ov-quotas [data-quota-team="vision"]')
    expect(quota.get_by_role("meter", name="GPU quota")).to_have_attribute("aria-valuenow", "3")
    expect(quota.locator(".quota-numbers")).to_have_text("3 of 8 GPUs held")
    audit = page.locator("section.ov-audit table.ov-events")
    expect(audit).to_contain_text("deployment.create")
    expect(audit).to_contain_text("quota.reserve")
    expect(audit.locator("tbody tr").first).to_contain_text("quota.reserve")  # newest first
    expect(audit).not_to_contain_text("speech")
    ui.screenshot("overview")

    # The deployments part follows the rollout with no reload: too little traffic pauses it.
    page.evaluate("window.notReloaded = true")
    step(d, Event.NO_DATA)
    expect(row.locator("[data-state]")).to_have_text("paused", timeout=8_000)
    expect(row).to_have_class("ov-dep ov-tone-wait")
    assert page.evaluate("window.notReloaded") is True
    ui.screenshot("overview-paused")
    ui.assert_only_local()
    assert violations == []


def test_a_team_with_nothing_moving_says_so(ui, outsider, other_team):
    ui.sign_in("otto")
    page = ui.page
    moving = page.locator("section.ov-deployments")
    expect(moving).to_contain_text("Nothing is moving.")
    expect(moving).to_contain_text("No deployment is scheduled.")
    expect(page.locator("section.ov-fleet table.ov-replicas")).to_contain_text("No gateway replica has reported in.")
    expect(page.locator('section.ov-quotas [data-quota-team="speech"]')).to_contain_text("no GPU quota set")
    ui.screenshot("overview-empty")
