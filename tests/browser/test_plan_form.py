"""A deployer plans deployments in chromium: on the Deployments page, Preview draws the step
timeline and the GPUs against the quota; a refused field comes back next to that field; fixed, it
starts and lands on the deployment's page. With a start time it is scheduled, listed with its
start time, and cancelled from the list through the Reason dialog. On an endpoint's page the form
has the endpoint fixed."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from controlplane.audit.models import AuditEvent
from controlplane.deployments.machine import State
from controlplane.deployments.models import Deployment
from controlplane.quotas.services import quota_set
from tests.browser.conftest import SCREENSHOTS
from tests.deployments.conftest import (  # noqa: F401 - fixtures
    as_admin,
    as_deployer,
    blue,
    label_endpoint,
    labels,
    pinned_endpoint,
    pool,
    servers,
    versions,
)
from tests.deployments.test_services import gpu_blue, gpu_servers  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser
DEPLOYMENT_PAGE = re.compile(r"/deployments/\d+/$")


def csp_reports(page) -> list[str]:
    """Chromium reports each Content-Security-Policy violation on the console."""
    found: list[str] = []
    page.on("console", lambda message: found.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text else None)
    return found


def screenshot(ui, name: str):
    """ui.screenshot, keeping the caret: Playwright hides it by touching every input's style,
    which leaves style="" behind for htmx's next swap to copy, and the CSP refuses that copy."""
    path = SCREENSHOTS / f"{name}.png"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ui.page.screenshot(path=str(path), full_page=True, caret="initial")
    assert path.stat().st_size > 10_000, f"{path} looks empty"


def test_plan_preview_refusal_start_and_schedule_then_cancel(ui, deployer, label_endpoint, pinned_endpoint):  # noqa: F811
    page = ui.page
    violations = csp_reports(page)
    ui.sign_in("dana")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deployments").click()
    plan = page.locator("#plan")
    expect(plan.get_by_role("heading", name="Plan a deployment")).to_be_visible()
    expect(page.locator("#scheduled")).to_contain_text("No deployment is scheduled.")

    # A linear rollout, previewed: the timeline and the quota bar, nothing written.
    plan.get_by_label("Endpoint").select_option("vision.scorer")
    plan.get_by_label("Green: version or label").fill("2")
    plan.get_by_label("Strategy").select_option("linear")
    expect(plan.get_by_label("Canary %")).to_be_hidden()
    plan.get_by_label("Step %").fill("25")
    plan.get_by_label("Bake (s)").fill("30")
    plan.get_by_label("Reason").fill("v2: faster tokenizer")
    plan.get_by_role("button", name="Preview plan").click()
    timeline = page.get_by_role("table", name="Step timeline")
    expect(timeline.locator("tbody tr")).to_have_count(7)
    expect(timeline.locator('tr[data-phase="step 2"] [data-traffic]')).to_have_text("50%")
    expect(page.locator("[data-projected]")).to_have_text("2 minutes 3 seconds")
    expect(page.locator("[data-plan-quota] .quota-bar[role=meter]")).to_be_visible()
    expect(page.locator("[data-plan-quota]")).to_contain_text("no GPU quota set")
    screenshot(ui, "plan-preview")
    assert not Deployment.objects.exists()

    # Explicit steps that do not grow: refused next to the steps, still nothing written.
    plan.get_by_label("Strategy").select_option("steps")
    expect(plan.get_by_label("Step %")).to_be_hidden()
    plan.get_by_label("Steps").fill("10:30, 5:30")
    expect(page.locator("[data-plan-stale]")).to_be_visible()  # the preview above no longer matches
    plan.get_by_role("button", name="Preview plan").click()
    steps_error = plan.locator('[data-field="steps"] .field-error')
    expect(steps_error).to_have_text("Step 2 (5:30): Steps must grow: 5 is not above 10.")
    expect(plan.locator(".plan-refused")).to_contain_text("1 problem")
    expect(page.get_by_role("table", name="Step timeline")).to_have_count(0)
    expect(plan.get_by_label("Steps")).to_have_value("10:30, 5:30")  # what was typed stays
    screenshot(ui, "plan-field-error")
    assert not Deployment.objects.exists()

    # Fixed, previewed again, then started: the deployment's page.
    plan.get_by_label("Steps").fill("10:30, 50:30, 100")
    plan.get_by_role("button", name="Preview plan").click()
    expect(page.get_by_role("table", name="Step timeline").locator("tr[data-phase^='step']")).to_have_count(3)
    expect(steps_error).to_have_count(0)
    plan.get_by_role("button", name="Start deployment").click()
    expect(page).to_have_url(DEPLOYMENT_PAGE)
    d = Deployment.objects.get()
    assert page.url == ui.url(f"/deployments/{d.pk}/")
    expect(page.locator(".message.success")).to_have_text(f"Deployment {d.pk} started: vision.scorer v1 → v2.")
    assert d.steps == [{"percent": 10, "bake_s": 30}, {"percent": 50, "bake_s": 30}, {"percent": 100, "bake_s": 0}]
    assert AuditEvent.objects.get(action="deployment.create").source == "ui"

    # A second endpoint, scheduled: the button says so, and the list shows it with its time.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deployments").click()
    plan.get_by_label("Endpoint").select_option("vision.fraud")
    plan.get_by_label("Green: version or label").fill("3")
    when = (timezone.now() + timedelta(hours=3)).replace(second=0, microsecond=0)
    plan.get_by_label("Start at (UTC)").fill(when.strftime("%Y-%m-%dT%H:%M"))
    expect(plan.locator("[data-local-time]")).to_contain_text("your time")
    plan.get_by_label("Reason").fill("tonight's window")
    plan.get_by_role("button", name="Schedule deployment").click()
    expect(page).not_to_have_url(ui.url("/deployments/"))
    expect(page).to_have_url(DEPLOYMENT_PAGE)
    scheduled = Deployment.objects.get(endpoint=pinned_endpoint)
    assert page.url == ui.url(f"/deployments/{scheduled.pk}/")
    assert (scheduled.state, scheduled.start_at) == (State.SCHEDULED, when)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deployments").click()
    row = page.locator(f'tr[data-scheduled="{scheduled.pk}"]')
    expect(row.locator("[data-start-at]")).to_have_text(when.strftime("%Y-%m-%d %H:%M"))
    expect(row.locator("[data-starts-in]")).to_contain_text("in 2\xa0hours")
    expect(page.locator(f'tr[data-deployment="{d.pk}"] [data-state]')).to_have_text("pending")
    screenshot(ui, "plan-scheduled-list")

    # Cancel asks for a reason; Keep it keeps it.
    row.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Cancel deployment {scheduled.pk}?")
    screenshot(ui, "plan-scheduled-cancel-dialog")
    dialog.get_by_role("button", name="Keep it").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    scheduled.refresh_from_db()
    assert scheduled.state == State.SCHEDULED
    row.get_by_role("button", name="Cancel").click()
    dialog.get_by_label("Reason").fill("window moved")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(ui.url(f"/deployments/{scheduled.pk}/"))
    scheduled.refresh_from_db()
    assert scheduled.state == State.CANCELLED
    ui.goto("/deployments/")
    expect(page.locator(f'tr[data-scheduled="{scheduled.pk}"]')).to_have_count(0)
    ui.assert_only_local()
    assert violations == []


def test_the_endpoint_page_plans_for_its_endpoint(ui, deployer, label_endpoint):  # noqa: F811
    page = ui.page
    ui.sign_in("dana")
    ui.goto(f"/endpoints/{label_endpoint.pk}/")
    plan = page.locator("#plan")
    expect(plan.get_by_role("heading")).to_have_text("Deploy a new version to vision.scorer")
    expect(plan.get_by_label("Endpoint")).to_have_count(0)  # fixed: no choice
    plan.get_by_label("Green: version or label").fill("canary")
    plan.get_by_role("group", name="Placement").get_by_label("new servers (separate capacity)").check()
    expect(plan.get_by_label("Servers", exact=True)).to_be_visible()
    plan.get_by_label("Servers", exact=True).fill("cpu-1")
    plan.get_by_role("button", name="Preview plan").click()
    expect(plan.locator('[data-field="servers"] .field-error')).to_contain_text("fraud-scorer is already placed on cpu-1")
    plan.get_by_label("Servers", exact=True).fill("cpu-2")
    # A gate the service refuses: the gates section opens on it, the error by its box.
    plan.locator("summary", has_text="Gates").click()
    plan.get_by_label("Max p99 (ms)").fill("0")
    plan.get_by_label("Custom gate 1 name").fill("queue")
    plan.get_by_label("Custom gate 1 query").fill('sum(rate(switchyard_gateway_requests_total{endpoint={{endpoint}}, variant={{variant}}}[{{window}}]))')
    plan.get_by_role("button", name="Preview plan").click()
    expect(plan.locator('[data-field="max_p99_ms"] .field-error')).to_have_text("Give a number above 0 to 3.6e+06.")
    expect(plan.locator('[data-field="custom-0-max"] .field-error')).to_contain_text("Give a number")
    expect(plan.locator("details.plan-gates")).to_have_attribute("open", "")
    screenshot(ui, "plan-endpoint-gate-errors")
    plan.get_by_label("Max p99 (ms)").fill("250")
    plan.get_by_label("Custom gate 1 max").fill("5000")
    plan.get_by_role("button", name="Preview plan").click()
    expect(page.get_by_role("table", name="Step timeline")).to_be_visible()
    expect(plan.locator(".plan-summary")).to_contain_text("vision.scorer: v1 → v2, canary, new servers (separate capacity) on cpu-2")
    screenshot(ui, "plan-endpoint-preview")
    plan.get_by_role("button", name="Start deployment").click()
    expect(page).to_have_url(DEPLOYMENT_PAGE)
    d = Deployment.objects.get()
    assert page.url == ui.url(f"/deployments/{d.pk}/")
    assert (d.target_label, d.placement_mode, [s["name"] for s in d.servers]) == ("canary", "new_servers", ["cpu-2"])
    assert (d.gates["max_p99_ms"], d.gates["custom"]) == (250.0, [
        {"name": "queue", "query": 'sum(rate(switchyard_gateway_requests_total{endpoint={{endpoint}}, variant={{variant}}}[{{window}}]))', "max": 5000.0}])


def test_a_surge_over_the_quota_is_drawn_and_start_is_refused_with_the_numbers(ui, deployer, as_admin, team, gpu_blue):  # noqa: F811
    quota_set(actor=as_admin, team=team, gpus=3)
    page = ui.page
    ui.sign_in("dana")
    ui.goto("/deployments/")
    plan = page.locator("#plan")
    plan.get_by_label("Endpoint").select_option("vision.gpu")
    plan.get_by_label("Green: version or label").fill("2")
    plan.get_by_role("group", name="Placement").get_by_label("new servers (separate capacity)").check()
    plan.get_by_label("Servers", exact=True).fill("gpu-2")
    plan.get_by_role("button", name="Preview plan").click()
    quota = page.locator("[data-plan-quota]")
    expect(quota.locator(".quota-state")).to_have_text("1 over quota")
    expect(quota.locator("[data-surge]")).to_have_text("2 GPUs")
    expect(quota.locator(".quota-limit")).to_be_visible()
    # The bar's widths come from data-width through the CSSOM: held now 2 and the surge 2 of 4.
    widths = quota.locator(".quota-seg").evaluate_all("els => els.map(e => e.style.width)")
    assert widths == ["50%", "50%"]
    screenshot(ui, "plan-over-quota")
    plan.get_by_role("button", name="Start deployment").click()
    expect(plan.locator('[data-field="placement"] .field-error')).to_have_text(
        "team vision would hold 4 of 3 GPUs: deployment of fraud-scorer v2 on new servers (the surge) needs 2 new on top of 2 held")
    expect(plan.locator(".plan-refused")).to_contain_text("Refused (conflict)")
    expect(page.locator("[data-plan-quota] .quota-state")).to_have_text("1 over quota")
    assert not Deployment.objects.exists()
