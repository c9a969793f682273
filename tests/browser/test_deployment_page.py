"""A deployment's page in Debian's chromium: the live part moves without a reload, Promote asks for
a reason in a dialog (Keep it changes nothing, and the refresh never closes an open dialog), the
confirmed promotion shows within a second, and a RollbackFailed deployment puts a banner on every
page of the team until someone retries it. The deployments are moved as the worker would
(tests/deployments/conftest.py); the end-to-end flows with a real worker are in other tests."""
import pytest
from playwright.sync_api import expect

from controlplane.deployments.machine import Event, State
from controlplane.deployments.models import Deployment, DeploymentTransition
from tests.browser.conftest import SCREENSHOTS
from tests.deployments.conftest import (  # noqa: F401 - fixtures
    as_deployer,
    blue,
    create,
    drive,
    events,
    label_endpoint,
    labels,
    pinned_endpoint,
    pool,
    servers,
    step,
    versions,
)

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("purge_queued_tasks")]


def state(page):
    return page.locator("#deployment-live .deploy-state[data-state]")


def test_watch_and_promote_a_canary_in_the_browser(ui, label_endpoint, as_deployer):  # noqa: F811 (imported fixtures)
    d = drive(create(as_deployer, bake_s=30), State.ANALYZING)
    page = ui.page
    ui.sign_in("dana")
    ui.goto(f"/deployments/{d.pk}/")
    expect(state(page)).to_have_text("analyzing")
    expect(state(page)).to_have_attribute("data-state", "analyzing")
    expect(page.locator("[data-traffic]")).to_have_text("10%")
    expect(page.locator("[data-traffic]")).to_have_attribute("data-traffic", "10")
    expect(page.locator(".progress-label").filter(has_text="Step 1 of 1")).to_be_visible()
    expect(page.get_by_role("progressbar", name="Overall progress")).to_have_attribute("value", "82")
    expect(page.get_by_role("progressbar", name="Traffic to green")).to_have_attribute("value", "10")
    expect(page.get_by_role("button", name="Promote")).to_be_visible()
    expect(page.get_by_role("button", name="Roll back")).to_be_visible()
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    page.evaluate("window.notReloaded = true")  # gone if the page reloads
    ui.screenshot("deployment-page-analyzing")

    # Promote opens the dialog; Keep it closes it without acting
    page.get_by_role("button", name="Promote").click()
    dialog = page.get_by_role("dialog", name=f"Promote: deployment {d.pk}")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Reason")).to_be_visible()
    ui.screenshot("deployment-promote-dialog")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    d.refresh_from_db()
    assert d.state == State.ANALYZING and not events("deployment.promote")

    # the refresh waits while a dialog is open: what is typed stays
    page.get_by_role("button", name="Promote").click()
    dialog = page.get_by_role("dialog", name=f"Promote: deployment {d.pk}")
    dialog.get_by_label("Reason").fill("p99 and errors flat for 10 minutes")
    page.wait_for_timeout(2500)  # two refreshes would have replaced it
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Reason")).to_have_value("p99 and errors flat for 10 minutes")

    # Confirm: the state changes within a second, without a reload
    dialog.get_by_role("button", name="Confirm").click()
    expect(state(page)).to_have_text("promoting", timeout=1000)
    expect(page.locator("[data-traffic]")).to_have_text("100%", timeout=1000)
    expect(page.get_by_role("dialog")).to_have_count(0)
    latest = page.locator(".timeline .tl-item").first
    expect(latest).to_contain_text("promoting")
    expect(latest).to_contain_text("dana")
    expect(latest).to_contain_text("p99 and errors flat for 10 minutes")
    assert page.evaluate("window.notReloaded") is True
    [event] = events("deployment.promote")
    assert (event.source, event.reason) == ("ui", "p99 and errors flat for 10 minutes")
    t = DeploymentTransition.objects.filter(deployment=d).latest("id")
    assert (t.to_state, t.actor_name, t.source) == ("promoting", "dana", "ui")

    # the worker finishes the promotion: the page follows by itself
    step(Deployment.objects.get(pk=d.pk), Event.OK)
    expect(state(page)).to_have_text("succeeded", timeout=3000)
    expect(page.get_by_role("button", name="Fast rollback")).to_be_visible()
    expect(page.locator(".window-left")).to_contain_text("left for a one-click fast rollback")
    assert page.evaluate("window.notReloaded") is True
    ui.screenshot("deployment-page-succeeded")
    ui.assert_only_local()


def test_a_refused_action_comes_back_in_its_dialog(ui, label_endpoint, as_deployer):  # noqa: F811 (imported fixtures)
    d = drive(create(as_deployer), State.PAUSED)
    page = ui.page
    ui.sign_in("dana")
    ui.goto(f"/deployments/{d.pk}/")
    expect(state(page)).to_have_text("paused")
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog", name=f"Resume: deployment {d.pk}")
    dialog.get_by_label("Reason").fill("traffic is back")
    # meanwhile someone else rolls it back
    step(Deployment.objects.get(pk=d.pk), Event.ROLLBACK)
    dialog.get_by_role("button", name="Confirm").click()
    dialog = page.get_by_role("dialog", name=f"Resume: deployment {d.pk}")
    expect(dialog.get_by_role("alert")).to_contain_text("cannot be resumed (only a paused one can)")
    expect(dialog.get_by_role("button", name="Confirm")).to_have_count(0)
    expect(state(page)).to_have_text("rolling_back")
    ui.screenshot("deployment-refused-action")
    dialog.get_by_role("button", name="Keep it").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    d.refresh_from_db()
    assert d.state == State.ROLLING_BACK and not events("deployment.resume")


def test_rollback_failed_banner_on_every_page_until_someone_retries(ui, label_endpoint, pinned_endpoint, as_deployer):  # noqa: F811 (imported fixtures)
    d = drive(create(as_deployer, endpoint="vision.fraud"), State.ROLLBACK_FAILED)
    Deployment.objects.filter(pk=d.pk).update(status_text="cpu-1 did not answer the unload")
    page = ui.page
    ui.sign_in("dana")
    banner = page.locator("#rollback-failed-banner")
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_contain_text("Rollback failed")
    ui.goto("/endpoints/")
    expect(banner).to_contain_text("cpu-1 did not answer the unload")
    expect(banner).to_have_css("background-color", "rgb(197, 48, 48)")  # --bad
    ui.screenshot("rollback-failed-banner-endpoints")
    banner.get_by_role("link", name=f"Deployment {d.pk}").click()
    expect(page).to_have_url(ui.url(f"/deployments/{d.pk}/"))
    expect(state(page)).to_have_text("rollback_failed")
    ui.screenshot("deployment-page-rollback-failed")
    page.get_by_role("button", name="Retry").click()
    dialog = page.get_by_role("dialog", name=f"Retry: deployment {d.pk}")
    expect(dialog).to_contain_text("Try the rollback again.")
    dialog.get_by_label("Reason").fill("cpu-1 is back")
    dialog.get_by_role("button", name="Confirm").click()
    expect(state(page)).to_have_text("rolling_back", timeout=1000)
    expect(banner).to_be_hidden()  # the answer replaced it too
    ui.goto("/endpoints/")
    expect(page.get_by_role("alert")).to_have_count(0)
    assert SCREENSHOTS.joinpath("rollback-failed-banner-endpoints.png").exists()
