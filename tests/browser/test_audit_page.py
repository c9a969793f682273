"""The Audit page in Debian's chromium: filtering, the chain badge, an event's changes."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from controlplane.accounts.services import token_create, token_revoke
from controlplane.audit.context import Actor
from controlplane.fleet.services import pool_create
from controlplane.registry.models import Model
from controlplane.registry.services import model_create
from tests.conftest import TENSORS_IN, TENSORS_OUT

pytestmark = pytest.mark.browser


@pytest.fixture
def history(team, other_team, deployer, outsider, platform_admin):
    """vision: two models and a team token issued, then revoked with a reason; speech: a model;
    platform-wide: a pool. All through the services, as the API and the UI write them."""
    dana, pat = Actor(user=deployer, source="ui"), Actor(user=platform_admin, source="api")
    model_create(actor=dana, team=team, name="fraud-scorer", backend="python", inputs=TENSORS_IN, outputs=TENSORS_OUT)
    model_create(actor=dana, team=team, name="resnet50", backend="onnxruntime", inputs=TENSORS_IN, outputs=TENSORS_OUT)
    model_create(actor=Actor(user=outsider, source="api"), team=other_team, name="whisper", backend="python",
                 inputs=TENSORS_IN, outputs=TENSORS_OUT)
    pool_create(actor=pat, name="gpu-a100")
    token, _ = token_create(actor=pat, name="github-actions", scopes=["read"], expires_at=timezone.now() + timedelta(days=7), team=team)
    token_revoke(actor=pat, token=token, reason="Leaked in a CI log")


def test_filtering_the_audit_log(ui, history):
    page = ui.page
    rows = page.locator("table.audit > tbody > tr")
    actions = rows.locator("> td:nth-child(4)")

    ui.sign_in("dana")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    expect(page).to_have_url(ui.url("/audit/"))
    expect(page.locator("#chain")).to_have_text(re.compile(r"✓ Chain verified\s+to event \d+ \(7 events\)"))  # loaded by htmx after the page
    expect(page.locator("#chain").get_by_role("button", name="Full re-verification")).to_have_count(0)  # platform admins only
    expect(actions).to_have_text(["token.revoke", "token.create", "team.service_account", "model.create", "model.create"])
    expect(page.get_by_text("whisper")).to_have_count(0)  # speech's
    expect(page.get_by_text("gpu-a100")).to_have_count(0)  # platform-wide

    page.get_by_label("Action").fill("model.create")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"\?.*action=model\.create"))
    expect(actions).to_have_text(["model.create", "model.create"])
    expect(rows.locator("> td:nth-child(5)")).to_contain_text(["vision/resnet50", "vision/fraud-scorer"])
    expect(page.get_by_text("2 events matching the filters")).to_be_visible()

    page.get_by_label("Search").fill("resnet")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("vision/resnet50")
    expect(page.get_by_role("link", name="Export CSV")).to_have_attribute("href", "/api/v1/audit/events/export.csv?action=model.create&q=resnet")

    changes = rows.first.locator("details.changes")
    changes.locator("summary").click()
    expect(changes.locator("table.diff")).to_be_visible()
    expect(changes.locator("tr", has_text="backend")).to_contain_text("onnxruntime")
    ui.screenshot("audit-log-filtered")

    # Free text alone, across actions: the reason of the revocation.
    page.get_by_label("Action").fill("")
    page.get_by_label("Search").fill("leaked")
    page.get_by_role("button", name="Filter").click()
    expect(actions).to_have_text(["token.revoke"])
    expect(rows.first).to_contain_text("Leaked in a CI log")

    # A date range: everything is from today; nothing is from before yesterday.
    page.get_by_label("Search").fill("")
    page.get_by_label("To (UTC)").fill(str(timezone.now().date() - timedelta(days=2)))
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_text(["No events match these filters."])
    page.get_by_label("To (UTC)").fill(str(timezone.now().date()))
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(5)

    # A malformed date in the address is an inline error, not a crash.
    ui.goto("/audit/?since=last-tuesday")
    expect(page.locator(".field-error")).to_have_text("From: Enter an ISO 8601 date or datetime, such as 2026-05-01 or 2026-05-01T12:00:00Z.")
    expect(page.get_by_label("From (UTC)")).to_have_attribute("aria-invalid", "true")
    expect(rows).to_have_text(["No events match these filters."])
    expect(page.locator("#chain")).to_contain_text("Chain verified")
    ui.screenshot("audit-log-bad-filter")
    ui.assert_only_local()


def test_a_model_page_shows_its_history(ui, history):
    page = ui.page
    model = Model.objects.get(name="fraud-scorer")
    ui.sign_in("dana")
    ui.goto(f"/models/{model.pk}/")
    card = page.locator("section.history")
    expect(card.get_by_role("heading", name="History")).to_be_visible()
    expect(card.locator("li")).to_have_count(1)
    expect(card.locator("li")).to_contain_text("dana model.create (ui)")
    card.locator("details.changes summary").click()
    expect(card.locator("table.diff tr", has_text="backend")).to_contain_text("python")
    ui.screenshot("model-history")

    card.get_by_role("link", name="full log →").click()
    expect(page).to_have_url(ui.url(f"/audit/?object_type=registry.model&object_id={model.pk}"))
    expect(page.locator("table.audit > tbody > tr")).to_have_count(1)
    expect(page.get_by_label("Object id")).to_have_value(str(model.pk))


def test_a_platform_admin_queues_a_full_verification_from_the_badge(ui, history, platform_admin):
    from controlplane.audit.models import AuditEvent
    from tests.conftest import PASSWORD

    page = ui.page
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    ui.sign_in(platform_admin.username, PASSWORD)
    ui.goto("/audit/")
    page.locator("#chain").get_by_role("button", name="Full re-verification").click()
    expect(page.locator(".message.success")).to_contain_text("A full verification of the audit chain is queued")
    assert asked and asked[0].startswith("Re-hash the whole audit chain")
    assert AuditEvent.objects.filter(action="audit.verify_full_request", source="ui", actor_name="pat").count() == 1
    ui.assert_only_local()
