"""Placements on the model page, in Debian's chromium, against real tritonservers.

One server is healthy; the disposable one fails the model's initialize() while a marker file sits
in its working directory, so the page shows a READY target beside a FAILED, drifted one.
"""
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.celery import app
from controlplane.fleet.models import Pool, Server
from controlplane.placements import services
from controlplane.placements.models import Placement
from controlplane.registry.services import version_register
from tests.browser.conftest import in_thread
from tests.placements.conftest import make_config
from tests.placements.test_on_triton import (
    FAILS_ON_MARKED_NODE,
    NAME,
    create_placer,
    infer_concurrently,
    model_source,
    unload_and_wait,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DRIFT_ROW_BACKGROUND = "rgb(255, 248, 235)"  # #fff8eb in switchyard.css


@pytest.fixture
def model(team, deployer):
    return create_placer(team, deployer)


@pytest.fixture
def placed(s3, model, deployer, triton_fleet, disposable_triton):
    actor = Actor(user=deployer, source="api")
    version_register(actor=actor, model=model, version=1, contents={"model.py": model_source(1, init=FAILS_ON_MARKED_NODE, latency_ms=20)})
    make_config(model, 1, {"dynamic_batching": {"max_queue_delay_microseconds": 50000}})  # so requests batch
    pool = Pool.objects.create(name="cpu")
    healthy = Server.objects.create(name="fleet-0", pool=pool, http_url=triton_fleet[0].http_url)
    broken = Server.objects.create(name="disposable", pool=pool, http_url=disposable_triton.http_url)
    marker = Path(disposable_triton.log_path).parent / "fail-init"
    marker.write_text("broken on purpose")
    placement, _ = services.placement_create(actor=actor, model=model, versions=[1], servers=[healthy, broken])
    assert in_thread(services.placement_apply, placement_id=placement.pk) == {"ready": 1, "failed": 1}
    in_thread(services.reconcile_fleet)  # records the failed server's drift
    in_thread(infer_concurrently, healthy.http_url, 16)
    assert in_thread(services.placements_sample)["targets"] == 2  # what the periodic task does
    yield placement, marker
    app.control.purge()  # the page's retry and remove queued tasks that no worker ran here
    in_thread(unload_and_wait, healthy.http_url, NAME)


def test_model_page_shows_each_server_with_live_state_drift_and_batching(ui, placed, model, triton_fleet):
    placement, marker = placed
    page = ui.page
    ui.sign_in("dana")
    ui.goto(f"/models/{model.pk}/")
    section = page.get_by_role("region", name="Placements")
    card = section.get_by_role("article", name=f"Placement {placement.pk}")
    expect(card.locator(".placement-summary .pill")).to_have_text(["1 failed", "1 ready"])

    healthy = card.locator('tr[data-server="fleet-0"]')
    broken = card.locator('tr[data-server="disposable"]')
    expect(healthy.locator(".target-state")).to_have_text("Ready")
    expect(healthy.locator(".drift-cell")).to_contain_text("in sync")
    expect(broken.locator(".target-state")).to_have_text("Failed")
    expect(broken.locator(".target-error")).to_contain_text("RuntimeError: node broken: fail-init marker present")
    expect(broken.locator(".drift-badge")).to_have_text("missing")
    expect(broken).to_have_class("target state-failed drifted")
    # expect() retries: the live section may swap the rows in between (htmx), detaching them.
    expect(broken.locator("td").nth(1)).to_have_css("background-color", DRIFT_ROW_BACKGROUND)
    expect(healthy.locator("td").nth(1)).not_to_have_css("background-color", DRIFT_ROW_BACKGROUND)

    # What Triton said at the last sample arrives through htmx, with the batching numbers.
    expect(healthy.locator(".live .model-state")).to_have_text("v1 READY")
    expect(healthy.locator(".live .sample-age")).to_have_text(re.compile(r"sampled \d+ s ago"))
    expect(broken.locator(".live")).to_contain_text("v1 UNAVAILABLE")
    expect(healthy.locator(".insight-batch")).to_contain_text("of 8")
    batch = float(healthy.locator(".insight-batch").inner_text().split()[0])
    assert 1 < batch <= 8
    expect(healthy.locator(".insight-queue")).to_contain_text("%")
    expect(healthy.locator(".insight-batch .basis")).to_have_text("since load")  # one sample: no window yet
    expect(healthy.locator(".insight-rps")).to_have_text("—")
    expect(broken.locator(".insight-batch")).to_have_text("—")
    ui.screenshot("placements-model-page")

    # More traffic, and the next sample: rates over the window between the two samples.
    in_thread(infer_concurrently, triton_fleet[0].http_url, 16)
    in_thread(services.placements_sample)
    page.reload()
    expect(healthy.locator(".insight-batch .basis")).to_have_text(re.compile(r"last \d+ s"))
    expect(healthy.locator(".insight-rps .muted")).to_have_text(re.compile(r"last \d+ s"))
    assert float(healthy.locator(".insight-rps").inner_text().split()[0]) > 0

    # Fix the node, then retry from the page (with its confirmation).
    marker.unlink()
    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Retry failed").click()
    expect(page.get_by_role("status").filter(has_text="Retrying")).to_have_text(f"Retrying placement {placement.pk} on disposable.")
    expect(broken.locator(".target-state")).to_have_text("Pending")
    assert in_thread(services.placement_apply, placement_id=placement.pk) == {"ready": 1}  # what the worker does
    in_thread(services.placements_sample)
    page.reload()
    expect(card.locator(".placement-summary .pill")).to_have_text(["2 ready"])
    expect(broken.locator(".live .model-state")).to_have_text("v1 READY")
    ui.screenshot("placements-after-retry")

    # Remove, dismissing the confirmation first: nothing happens.
    page.once("dialog", lambda dialog: dialog.dismiss())
    card.get_by_role("button", name="Remove").click()
    assert Placement.objects.get(pk=placement.pk).removed_at is None
    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status").filter(has_text="removed")).to_be_visible()
    expect(section.locator("article")).to_have_count(0)
    assert in_thread(services.placement_unload, placement_id=placement.pk) == {"removed": 2}
    sources = set(AuditEvent.objects.filter(action__in=["placement.remove", "placement.target.retry"]).values_list("source", flat=True))
    assert sources == {"ui"}
    ui.assert_only_local()
