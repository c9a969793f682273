"""The deployment flows clicked through in the browser against the real stack: the web server
(pytest-django's live server), a Celery worker process with beat, the gateway, Prometheus, the
Triton fleet and S3 (tests/rollouts/conftest.py's `stack`). Each flow starts from the plan form on
the Deployments page and is watched on the deployment's live page, which must move on its own
(htmx), with no reload.
"""
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from controlplane.deployments.models import Deployment
from tests.browser.conftest import SCREENSHOTS
from tests.metrics.conftest import prometheus, prometheus_token  # noqa: F401 (fixtures the stack uses)
from tests.rollouts.conftest import ENDPOINT, Load, stack, wait_for  # noqa: F401 (stack is a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DEPLOYMENT_PAGE = re.compile(r".*/deployments/\d+/$")

# Gates quick enough for a test: judged every second over 10 s, on 5 requests.
FAST_GATES = {"Min requests": 5, "Interval (s)": 1, "Window (s)": 10, "Failures to breach": 2}
# Records every state the live part shows, and whether the page was ever reloaded (a reload
# loses window.__flow). Playwright evaluates this through the DevTools protocol: the page's CSP
# does not apply to it, and nothing is added to the page itself.
WATCH_STATES = """() => {
  window.__flow = {states: []};
  const read = () => {
    const el = document.querySelector('#deployment-live [data-state]');
    const s = el && el.getAttribute('data-state');
    const seen = window.__flow.states;
    if (s && seen[seen.length - 1] !== s) seen.push(s);
  };
  read();
  new MutationObserver(read).observe(document.body, {childList: true, subtree: true, attributes: true});
}"""


def live_state(page):
    return page.locator("#deployment-live [data-state]")


def live_traffic(page):
    return page.locator("#deployment-live [data-traffic]")


def seen_states(page) -> list[str] | None:
    """The states the page showed since watch(), or None if it was reloaded since."""
    return page.evaluate("() => window.__flow ? window.__flow.states : null")


def plan(ui, *, green: int, canary: int, bake_s: int, reason: str, start_at: datetime | None = None):
    """Fill the Deployments page's plan form: a canary of the stack's endpoint, green on fleet-1."""
    form = ui.page.locator("[data-plan-form]")
    form.get_by_label("Endpoint").select_option(ENDPOINT)
    form.get_by_label("Green: version or label").fill(str(green))
    form.get_by_label("Strategy").select_option("canary")
    form.get_by_label("Canary %").fill(str(canary))
    form.get_by_label("Bake (s)").fill(str(bake_s))
    form.get_by_label("new servers (separate capacity)").check()
    form.get_by_label("Servers", exact=True).fill("fleet-1")
    form.locator("summary", has_text="Gates").click()
    for label, value in FAST_GATES.items():
        form.get_by_label(label, exact=True).fill(str(value))
    form.get_by_label("Rollback window (s)").fill("5")
    if start_at is not None:
        form.get_by_label("Start at (UTC)").fill(start_at.strftime("%Y-%m-%dT%H:%M"))
    form.get_by_label("Reason", exact=True).fill(reason)
    return form


def act(page, button: str, action: str, reason: str) -> None:
    """Click an action's button, give the reason in its dialog and confirm."""
    page.get_by_role("button", name=button, exact=True).click()
    dialog = page.locator(f"dialog#act-{action}")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Reason").fill(reason)
    dialog.get_by_role("button", name="Confirm").click()


def deployment_from_url(page) -> Deployment:
    pk = int(page.url.rstrip("/").rsplit("/", 1)[1])
    return Deployment.objects.get(pk=pk)


# How many values a line has in a chart's own table (uPlot's legend names the lines too).
LINE_VALUES = """([figure, label]) => {
  const heads = Array.from(figure.querySelectorAll('.chart-table thead th')).map(th => th.textContent);
  const column = heads.indexOf(label);
  if (column < 0) return 0;
  return Array.from(figure.querySelectorAll('.chart-table tbody tr'))
    .filter(tr => tr.children[column] && tr.children[column].textContent !== '\u2014').length;
}"""


def wait_for_chart_lines(page, series: str, *labels: str, values: int = 1, timeout: float = 30) -> None:
    """Show the last 15 minutes and wait until the chart has `values` points on each line."""
    page.locator("[data-chart-range='15m']").click()
    figure = page.locator(f"figure[data-series='{series}']")
    expect(figure).to_have_attribute("data-state", "ok", timeout=timeout * 1000)
    handle = figure.element_handle()
    for label in labels:
        wait_for(lambda: page.evaluate(LINE_VALUES, [handle, label]) >= values, timeout,
                 f"{values} values of {label} on the {series} chart", interval=0.5)


def test_a_canary_promoted_by_hand_in_the_browser(stack, ui):  # noqa: F811 (the stack fixture, imported)
    load = Load(stack.gateway.url).start()
    page = ui.page
    try:
        ui.sign_in("dana")
        ui.goto("/deployments/")
        form = plan(ui, green=2, canary=30, bake_s=600, reason="canary v2, promoted by hand")
        form.get_by_role("button", name="Preview plan").click()
        preview = page.locator("#plan-preview")
        expect(preview.locator("[data-phase='step 1'] [data-traffic]")).to_have_text("30%")
        expect(preview.locator("[data-phase='promoting'] [data-traffic]")).to_have_text("100%")
        expect(preview).to_contain_text("v1 → v2")
        assert Deployment.objects.count() == 0  # a preview writes nothing
        ui.screenshot("rollout-plan-preview")

        form.get_by_role("button", name="Start deployment").click()
        expect(page).to_have_url(DEPLOYMENT_PAGE, timeout=30_000)
        d = deployment_from_url(page)
        page.evaluate(WATCH_STATES)
        expect(live_state(page)).to_have_attribute("data-state", "baking", timeout=60_000)
        expect(live_traffic(page)).to_have_attribute("data-traffic", "30")
        baking = time.monotonic()
        # Both versions answer through the gateway at 30%.
        wait_for(lambda: {a.version for a in load.since(baking)} >= {1, 2}, 15, "both versions to answer")

        # Blue against green on the charts, from Prometheus.
        wait_for_chart_lines(page, "requests", "blue v1", "green v2", values=4)
        wait_for_chart_lines(page, "latency_p99", "blue", "green")  # latency is per variant only
        ui.screenshot("rollout-in-progress")
        overview = page.context.new_page()
        overview.goto(ui.url("/"))
        expect(overview.locator("main")).to_contain_text(ENDPOINT)
        overview.screenshot(path=str(SCREENSHOTS / "overview-rollout-in-progress.png"), full_page=True)
        overview.close()

        act(page, "Promote", "promote", "green looks fine, skip the bake")
        clicked = time.monotonic()
        expect(live_state(page)).to_have_attribute("data-state", "succeeded", timeout=15_000)
        succeeded_after = time.monotonic() - clicked
        expect(live_traffic(page)).to_have_attribute("data-traffic", "100")
        expect(page.get_by_role("button", name="Fast rollback", exact=True)).to_be_visible()
        states = seen_states(page)
        assert states is not None, "the page was reloaded"
        assert states[-1] == "succeeded" and "baking" in states, states
        assert succeeded_after < 10, succeeded_after

        # The gateway serves green alone.
        time.sleep(1)
        after = time.monotonic()
        wait_for(lambda: len(load.since(after)) >= 10, 10, "answers after the promotion")
    finally:
        load.stop()
    assert {a.version for a in load.since(after)} == {2}
    assert [a for a in load.answers if a.version is None] == []
    d.refresh_from_db()
    assert d.state in ("succeeded", "retired") and d.traffic_percent == 100
    assert d.transitions.filter(event="promote", reason="green looks fine, skip the bake",
                                actor_name="dana").exists()

    # The audit log shows the promotion, by dana, with the reason.
    ui.goto("/audit/?action=deployment.promote")
    row = page.locator("table.audit tbody tr").first
    expect(row).to_contain_text("deployment.promote")
    expect(row).to_contain_text("dana")
    expect(row).to_contain_text("green looks fine, skip the bake")


def test_a_bad_green_is_rolled_back_on_its_own_on_the_page(stack, ui):  # noqa: F811 (the stack fixture, imported)
    load = Load(stack.gateway.url).start()
    page = ui.page
    try:
        ui.sign_in("dana")
        ui.goto("/deployments/")
        # v3 fails every second request once it has answered its warm-up.
        form = plan(ui, green=3, canary=50, bake_s=30, reason="a bad green")
        form.get_by_role("button", name="Start deployment").click()
        expect(page).to_have_url(DEPLOYMENT_PAGE, timeout=30_000)
        d = deployment_from_url(page)
        page.evaluate(WATCH_STATES)
        expect(live_state(page)).to_have_attribute("data-state", "rolled_back", timeout=60_000)
        ended = time.monotonic()
        expect(live_traffic(page)).to_have_attribute("data-traffic", "0")
        wait_for(lambda: len(load.since(ended)) >= 10, 10, "answers after the rollback")
    finally:
        load.stop()
    states = seen_states(page)
    assert states is not None, "the page was reloaded"
    # It moved on its own from a state before the rollback to rolled_back. (Green at 50% fails
    # its guard within a second, so shifting, baking and rolling_back can each fall between two
    # of the page's refreshes; the timeline below keeps every one.)
    assert states[0] not in ("rolling_back", "rolled_back") and states[-1] == "rolled_back", states
    # The timeline names what rolled it back.
    history = page.locator("#deployment-history [data-transition]")
    expect(history).to_have_count(8)
    assert [e.get_attribute("data-transition") for e in history.all()][:4] == \
        ["rolled_back", "rolling_back", "baking", "shifting"]
    breach = page.locator("#deployment-history [data-transition='rolling_back']")
    expect(breach).to_contain_text("breach")
    expect(breach).to_contain_text("guard")
    expect(page.locator("#deployment-history [data-transition='rolled_back']")).to_contain_text("traffic back on blue")
    expect(page.locator("#deployment-live")).to_contain_text("cause: breach")
    ui.screenshot("rollout-rolled-back")
    # Traffic is back on blue.
    assert {a.version for a in load.since(ended)} == {1}
    d.refresh_from_db()
    assert (d.state, d.cause, d.traffic_percent) == ("rolled_back", "breach", 0)


def test_a_scheduled_deployment_is_cancelled_from_the_deployments_page(stack, ui):  # noqa: F811 (the stack fixture, imported)
    page = ui.page
    ui.sign_in("dana")
    ui.goto("/deployments/")
    start_at = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    form = plan(ui, green=2, canary=20, bake_s=60, reason="tomorrow's canary", start_at=start_at)
    start = form.get_by_role("button", name="Schedule deployment")
    expect(start).to_be_visible()
    start.click()
    expect(page).to_have_url(DEPLOYMENT_PAGE, timeout=30_000)
    d = deployment_from_url(page)
    expect(live_state(page)).to_have_attribute("data-state", "scheduled", timeout=15_000)
    assert d.start_at == start_at

    ui.goto("/deployments/")
    row = page.locator(f"#scheduled [data-scheduled='{d.pk}']")
    expect(row).to_contain_text(ENDPOINT)
    expect(row).to_contain_text("v1 → v2")
    expect(row.locator("[data-start-at]")).to_have_text(start_at.strftime("%Y-%m-%d %H:%M"))
    ui.screenshot("deployments-scheduled")
    row.get_by_role("button", name="Cancel").click()
    dialog = page.locator(f"dialog#cancel-{d.pk}")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Keep it").click()  # changes nothing
    expect(dialog).to_be_hidden()
    assert Deployment.objects.get(pk=d.pk).state == "scheduled"
    row.get_by_role("button", name="Cancel").click()
    dialog.get_by_label("Reason").fill("the freeze starts tomorrow")
    dialog.get_by_role("button", name="Confirm").click()
    expect(live_state(page)).to_have_attribute("data-state", "cancelled", timeout=15_000)
    d.refresh_from_db()
    assert d.state == "cancelled"
    assert d.transitions.filter(event="cancel", reason="the freeze starts tomorrow").exists()
    ui.goto("/deployments/")
    expect(page.locator(f"#scheduled [data-scheduled='{d.pk}']")).to_have_count(0)
