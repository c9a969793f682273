"""The fleet's admin flows in Debian's chromium: a platform admin creates a pool, registers a real
tritonserver and a server with nothing behind it, edits one, opens their pages, is refused the
removal of a server that holds a placement, then drains it; a team user sees no admin action."""
import pytest
from playwright.sync_api import expect

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.celery import app
from controlplane.fleet import services
from controlplane.fleet.models import Server
from controlplane.placements.models import PlacementTarget
from controlplane.placements.services import placement_create
from tests.browser.conftest import in_thread
from tests.conftest import PASSWORD
from tests.quotas.conftest import make_model, make_version

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture(autouse=True)
def _purge_queued_tasks():
    yield
    app.control.purge()  # the forms queued probes and a drain that no worker ran here


def fill_server(page, *, name, pool, http_url, labels=""):
    page.get_by_label("Name").fill(name)
    page.get_by_label("Pool").select_option(pool)
    page.get_by_label("HTTP URL").fill(http_url)
    page.get_by_label("Labels").fill(labels)


def test_platform_admin_manages_pools_and_servers_and_drains_one(ui, platform_admin, deployer, team, triton_fleet):
    page = ui.page
    page.on("dialog", lambda dialog: dialog.accept())  # the data-confirm questions
    ui.sign_in(platform_admin.username, PASSWORD)

    # Create a pool.
    ui.goto("/fleet/")
    page.get_by_role("link", name="Create a pool").click()
    page.get_by_label("Name").fill("Bad Pool")
    page.get_by_role("button", name="Create").click()
    expect(page.locator('[data-field="name"] .field-error')).to_contain_text("lowercase")
    page.get_by_label("Name").fill("cpu-eu")
    page.get_by_label("Description").fill("CPU servers in eu-1")
    page.get_by_role("button", name="Create").click()
    expect(page.locator(".message.success")).to_have_text("Pool cpu-eu created.")
    expect(page.locator('tr[data-pool="cpu-eu"]')).to_contain_text("CPU servers in eu-1")

    # Register a real tritonserver; the worker's probe fills in its health and Triton version.
    page.get_by_role("link", name="Register a server").click()
    fill_server(page, name="triton-live", pool="cpu-eu", http_url=triton_fleet[0].http_url, labels="zone=eu-1a")
    page.get_by_role("button", name="Register").click()
    expect(page.locator(".message.success")).to_contain_text("Server triton-live registered")
    live = Server.objects.get(name="triton-live")
    assert live.labels == {"zone": "eu-1a"}
    in_thread(services.fleet_probe, server_ids=[live.pk])
    page.reload()
    expect(page.locator("[data-triton-version]")).to_have_text("2.51.0")
    expect(page.locator("h1 [data-status]")).to_have_text("Up")
    expect(page.locator("section.history")).to_contain_text("server.register")
    expect(page.locator("nav.mainnav a", has_text="Fleet")).to_have_attribute("aria-current", "page")
    ui.screenshot("fleet-server-live")

    # Edit it: a bad URL is refused next to its field, then a good edit is saved and audited.
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Metrics URL").fill("file:///metrics")
    page.get_by_label("GPU type").fill("L4")
    page.get_by_role("button", name="Save").click()
    expect(page.locator('[data-field="metrics_url"] .field-error')).to_contain_text("http://")
    ui.screenshot("fleet-server-edit-refused")
    assert Server.objects.get(pk=live.pk).gpu_type == ""
    page.get_by_label("Metrics URL").fill(triton_fleet[0].metrics_url)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".message.success")).to_have_text("Server triton-live saved.")
    expect(page.locator("section.history")).to_contain_text("server.update")

    # A server with nothing behind it, holding a placement, shows as down with the error.
    ui.goto("/fleet/servers/new/")
    fill_server(page, name="triton-gone", pool="cpu-eu", http_url="http://127.0.0.1:9")
    page.get_by_role("button", name="Register").click()
    gone = Server.objects.get(name="triton-gone")
    model = make_model(team, "fraud-scorer")
    make_version(model, 1)
    # Placed before its first probe; then the probe finds nothing listening.
    placement, _ = placement_create(actor=Actor(user=deployer, source="api"), model=model, versions=[1], servers=[gone])
    in_thread(services.fleet_probe, server_ids=[gone.pk])
    page.reload()
    expect(page.locator("h1 [data-status]")).to_have_text("Down")
    expect(page.locator("[data-last-error]")).not_to_be_empty()
    expect(page.locator(f'tr[data-target] a[href="/models/{model.pk}/#placements"]')).to_have_text("fraud-scorer")

    # Removing it is refused while it holds the placement; the refusal sits by the drain box.
    page.get_by_role("button", name="Remove server").click()
    expect(page.locator("#err-drain")).to_contain_text(f"vision/fraud-scorer (placement {placement.pk})")
    ui.screenshot("fleet-server-remove-refused")
    assert Server.objects.filter(pk=gone.pk, draining_since=None).exists()

    # Drain: the page says so at once; the worker unloads, then the server is gone.
    page.get_by_label("Drain first").check()
    page.get_by_role("button", name="Remove server").click()
    expect(page.locator(".message.success")).to_contain_text("triton-gone is draining")
    expect(page.locator("h1 .pill.draining")).to_be_visible()
    expect(page.locator('tr[data-target] .state')).to_have_text("Unloading")
    ui.screenshot("fleet-server-draining")
    assert in_thread(services.server_drain, server_id=gone.pk) is True
    assert PlacementTarget.objects.get(placement=placement).state == "removed"
    ui.goto("/fleet/")
    expect(page.locator('tr[data-server="triton-live"]')).to_be_visible()
    expect(page.locator('tr[data-server="triton-gone"]')).to_have_count(0)
    expect(page.locator('tr[data-pool="cpu-eu"] td').nth(2)).to_have_text("1")
    ui.screenshot("fleet-after-drain")

    # Pools: edit one; removing it is refused while it has a server; an empty one goes.
    pool_row = page.locator('tr[data-pool="cpu-eu"]')
    pool_row.get_by_role("link", name="Edit").click()
    page.get_by_label("Description").fill("CPU servers in eu-1 and eu-2")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".message.success")).to_have_text("Pool cpu-eu saved.")
    expect(pool_row).to_contain_text("eu-1 and eu-2")
    pool_row.get_by_role("button", name="Remove").click()
    expect(page.locator(".message.error")).to_contain_text("Pool cpu-eu still has servers (triton-live)")
    ui.screenshot("fleet-pool-remove-refused")
    page.get_by_role("link", name="Create a pool").click()
    page.get_by_label("Name").fill("spare")
    page.get_by_role("button", name="Create").click()
    page.locator('tr[data-pool="spare"]').get_by_role("button", name="Remove").click()
    expect(page.locator(".message.success")).to_have_text("Pool spare removed.")
    expect(page.locator('tr[data-pool="spare"]')).to_have_count(0)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"pool.create", "pool.update", "pool.delete", "server.register", "server.update", "server.drain", "server.remove",
            "placement.target.unload", "placement.target.removed"} <= actions
    ui.assert_only_local()


def test_a_team_user_sees_the_server_page_without_admin_actions(ui, deployer, team, other_team):
    from controlplane.fleet.models import Pool

    server = Server.objects.create(name="shared-1", pool=Pool.objects.create(name="cpu"), http_url="http://127.0.0.1:9")
    mine, theirs = make_model(team, "fraud-scorer"), make_model(other_team, "secret-asr")
    for model in (mine, theirs):
        make_version(model, 1)
        placement_create(actor=Actor.system(), model=model, versions=[1], servers=[server])
    ui.sign_in(deployer.username, PASSWORD)
    ui.goto("/fleet/")
    expect(ui.page.get_by_role("link", name="Register a server")).to_have_count(0)
    ui.page.get_by_role("link", name="shared-1").click()
    expect(ui.page.locator("tr[data-target]")).to_have_count(1)
    expect(ui.page.locator("tr[data-target]")).to_contain_text("fraud-scorer")
    expect(ui.page.locator("body")).not_to_contain_text("secret-asr")
    expect(ui.page.get_by_role("button", name="Remove server")).to_have_count(0)
    expect(ui.page.get_by_role("link", name="Edit")).to_have_count(0)
    ui.screenshot("fleet-server-team-view")
