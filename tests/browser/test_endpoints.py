"""A deployer creates a pinned endpoint in chromium, sees it listed with its status, edits a weight
and deletes it (confirmed); a refused form keeps the error next to the variant row."""
import pytest
from playwright.sync_api import expect

from controlplane.audit.models import AuditEvent
from controlplane.endpoints.models import Endpoint
from controlplane.fleet.models import Pool
from tests.endpoints.conftest import make_servers, place_ready
from tests.quotas.conftest import make_version

pytestmark = pytest.mark.browser


def test_create_list_edit_and_delete_a_pinned_endpoint(ui, deployer, model):
    for number in (1, 2):
        make_version(model, number)
    place_ready(model, [1], make_servers(Pool.objects.create(name="cpu"), "triton-1"))
    page = ui.page
    page.on("dialog", lambda dialog: dialog.accept())  # the data-confirm question
    ui.sign_in("dana")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Endpoints").click()
    expect(page.locator("table.endpoints")).to_contain_text("No endpoints yet.")
    page.get_by_role("link", name="New endpoint").click()
    page.get_by_label("Team").select_option("vision")
    page.get_by_label("Model").select_option(label="vision/fraud-scorer")
    page.get_by_label("Name", exact=True).fill("fraud")
    page.get_by_label("Kind").select_option("pinned")
    for row, (name, version, weight) in enumerate((("stable", "1", "90"), ("canary", "2", "1000001"))):
        page.get_by_label(f"Variant {row + 1} name").fill(name)
        page.get_by_label(f"Variant {row + 1} version").fill(version)
        page.get_by_label(f"Variant {row + 1} weight").fill(weight)
    page.get_by_label("Sticky header").fill("X-User-Id")
    page.get_by_role("button", name="Create").click()

    # Refused: the weight is over the bound; the error sits in that row and nothing was created.
    expect(page.locator('tr[data-row="1"] .field-error')).to_contain_text("0 to 1000000")
    assert not Endpoint.objects.exists()
    page.get_by_label("Variant 2 weight").fill("10")
    page.get_by_role("button", name="Create").click()
    expect(page.locator(".message.success")).to_have_text("Endpoint vision.fraud created.")
    expect(page.locator("h1 [data-endpoint-status]")).to_have_text("serving")
    expect(page.locator('li[data-variant="stable"] [data-servers]')).to_have_text("on triton-1")
    expect(page.locator('li[data-variant="canary"] [data-servers]')).to_have_text("no ready server")

    ui.goto("/endpoints/")
    row = page.locator('tr[data-endpoint="vision.fraud"]')
    expect(row.locator("[data-variants] .tag")).to_have_text(["stable: v1 × 90", "canary: v2 × 10"])
    expect(row.locator("[data-endpoint-status]")).to_have_text("serving")
    expect(page.locator("#gateway-replicas")).to_contain_text("No gateway replica has reported in.")
    ui.screenshot("endpoints-list")

    # Edit a weight.
    row.get_by_role("link", name="vision.fraud").click()
    page.get_by_label("Variant 2 weight").fill("30")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".message.success")).to_have_text("Endpoint vision.fraud saved.")
    expect(page.locator('li[data-variant="canary"]')).to_contain_text("weight 30")
    expect(page.locator("section.history")).to_contain_text("endpoint.update")
    ui.screenshot("endpoint-detail")
    assert [v.weight for v in Endpoint.objects.get().variants.all()] == [90, 30]

    # Delete, confirmed.
    page.get_by_role("button", name="Delete endpoint").click()
    expect(page.locator(".message.success")).to_have_text("Endpoint vision.fraud deleted.")
    expect(page).to_have_url(ui.url("/endpoints/"))
    expect(page.locator('tr[data-endpoint="vision.fraud"]')).to_have_count(0)
    assert not Endpoint.objects.exists()
    assert list(AuditEvent.objects.filter(object_type="endpoints.endpoint").order_by("id").values_list("action", "source")) == [
        ("endpoint.create", "ui"), ("endpoint.update", "ui"), ("endpoint.delete", "ui")]
    ui.assert_only_local()
