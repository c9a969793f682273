"""Charts in chromium: the endpoint page draws blue and green from a real Prometheus scraping a
real gateway, with a table view of the same numbers, switches range, and says plainly when
Prometheus is not configured or not answering. No request leaves the live server (uPlot is
vendored) and the CSP reports nothing."""
import re

import pytest
from playwright.sync_api import expect

from controlplane.endpoints.models import Endpoint, EndpointKind
from tests.metrics.chart_traffic import chart_traffic
from tests.metrics.conftest import prometheus, prometheus_token  # noqa: F401 - fixtures
from tests.quotas.conftest import make_model

pytestmark = pytest.mark.browser

CHART = 'figure[data-series="{}"]'


def _csp_violations(page) -> list[str]:
    found: list[str] = []
    page.on("console", lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None)
    return found


def test_the_endpoint_page_draws_blue_and_green_and_switches_range(
        ui, settings, prometheus, prometheus_token, team, deployer, triton_fleet, s3_client, tmp_path):  # noqa: F811
    settings.SWITCHYARD_PROMETHEUS_URL = prometheus.url
    page = ui.page
    violations = _csp_violations(page)
    with chart_traffic(prometheus, team, triton_fleet, s3_client, tmp_path) as known:
        ui.sign_in("dana")
        ui.goto(f"/endpoints/{known.endpoint.pk}/")
        panel = page.locator("section[data-charts]")
        expect(panel).to_have_attribute("data-scope", f"endpoint:{known.endpoint.pk}")
        throughput = page.locator(CHART.format("requests"))
        expect(throughput).to_have_attribute("data-state", "ok", timeout=15_000)
        assert int(throughput.get_attribute("data-points")) > 0
        expect(throughput.locator(".u-legend")).to_contain_text("blue v1")
        expect(throughput.locator(".u-legend")).to_contain_text("green v2")
        assert throughput.locator("canvas").count() == 1
        markers = {name: throughput.locator(".u-legend .u-series").filter(has_text=name).locator(".u-marker").evaluate(
                       "el => getComputedStyle(el).borderColor") for name in ("blue v1", "green v2")}
        assert markers == {"blue v1": "rgb(35, 88, 196)", "green v2": "rgb(18, 128, 92)"}, markers
        for series in ("error_ratio", "latency_p50", "latency_p99"):
            expect(page.locator(CHART.format(series))).to_have_attribute("data-state", "ok")

        # The table view holds the same numbers: a column per line, a row per time with a value.
        errors = page.locator(CHART.format("error_ratio"))
        errors.locator("details.chart-table summary").click()
        table = errors.locator("details.chart-table table")
        expect(table.locator("thead th")).to_have_text(["Time (UTC)", "blue v1", "green v2"])
        assert table.locator("tbody tr").count() > 0
        assert "%" in table.locator("tbody tr").first.locator("td").nth(2).inner_text()

        # Live: a short range polls, so the charts keep redrawing while the page is open.
        first = throughput.get_attribute("data-points")
        page.wait_for_function(
            "([sel, n]) => document.querySelector(sel).getAttribute('data-points') !== n",
            arg=[CHART.format("requests"), first], timeout=15_000)
        ui.screenshot("endpoint-charts")

        page.get_by_role("button", name="15 min").click()
        expect(page.get_by_role("button", name="15 min")).to_have_attribute("aria-pressed", "true")
        expect(page.get_by_role("button", name="1 h")).to_have_attribute("aria-pressed", "false")
        expect(throughput).to_have_attribute("data-range", "15m")
        expect(throughput).to_have_attribute("data-state", "ok")
        assert int(throughput.get_attribute("data-points")) > 0
        assert any("range=15m" in url for url in ui.requests)
        ui.screenshot("endpoint-charts-15m")
        # 24 h: points every 120 s, aligned; traffic younger than the last boundary may not show yet.
        page.get_by_role("button", name="24 h").click()
        expect(throughput).to_have_attribute("data-range", "24h")
        expect(throughput).to_have_attribute("data-state", re.compile("^(ok|no_data)$"))
    ui.assert_only_local()
    assert {"/static/vendor/uplot/uPlot.iife.min.js", "/static/js/charts.js"} <= {
        u.removeprefix(ui.base).split("?")[0] for u in ui.requests}
    assert violations == []


def test_the_overview_says_when_metrics_are_not_configured_or_down(ui, settings, team, deployer):
    page = ui.page
    violations = _csp_violations(page)
    settings.SWITCHYARD_PROMETHEUS_URL = ""
    ui.sign_in("dana")
    throughput = page.locator(CHART.format("requests"))
    expect(throughput).to_have_attribute("data-state", "not_configured")
    expect(throughput.locator(".chart-status")).to_have_text("Metrics are not configured")
    expect(throughput.locator(".chart-plot")).to_be_hidden()
    assert throughput.locator("canvas").count() == 0  # no chart of zeros
    ui.screenshot("overview-charts-not-configured")

    settings.SWITCHYARD_PROMETHEUS_URL = "http://127.0.0.1:9"
    model = make_model(team, "fraud-scorer")
    Endpoint.objects.create(team=team, name="fraud", model=model, kind=EndpointKind.LABEL, label="stable")
    ui.goto(f"/models/{model.pk}/")
    batch = page.locator(CHART.format("batch_size"))
    expect(batch).to_have_attribute("data-state", "unavailable")
    expect(batch.locator(".chart-status")).to_contain_text("Prometheus is not answering")
    ui.screenshot("model-charts-prometheus-down")
    assert violations == []
