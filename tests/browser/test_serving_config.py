"""A team admin edits the batching config on the model page: live diff and Triton JSON preview,
an inline error, the fix, a save with a reason, and the new revision in the history."""
import pytest
from playwright.sync_api import expect

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.serving.models import ServingConfig
from controlplane.serving.services import serving_config_save

pytestmark = pytest.mark.browser


def test_edit_batching_with_diff_preview_then_save(ui, model, team_admin):
    serving_config_save(actor=Actor(user=team_admin, source="api"), model=model, reason="first batching config",
                        spec={"dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 100}})
    ui.sign_in("ada")
    ui.goto(f"/models/{model.pk}/")
    page = ui.page
    section = page.locator("#serving-config")
    expect(section.get_by_role("heading", name="Serving config")).to_contain_text("revision 1")
    expect(section.get_by_label("Dynamic batching")).to_be_checked()
    preview = page.locator("#serving-preview")
    rendered = preview.get_by_label("Rendered Triton config")
    expect(rendered).to_contain_text('"max_queue_delay_microseconds": 100')

    section.get_by_label("Max queue delay").fill("500")
    section.get_by_label("Preferred batch sizes").fill("2, 4, 16")
    error = page.locator("#err-preferred_batch_size")
    expect(error).to_have_text("item 3: 16 is larger than max_batch_size (8).")
    expect(preview.get_by_role("alert")).to_contain_text("1 problem")
    expect(preview).to_contain_text("Not rendered while the config is invalid")
    ui.screenshot("serving-config-inline-error")

    section.get_by_label("Preferred batch sizes").fill("2, 4")
    expect(error).to_be_empty()
    diff = preview.locator("table.serving-diff")
    expect(diff.locator("tr")).to_have_count(2)
    expect(diff.locator("tr").nth(0)).to_contain_text("dynamic_batching.preferred_batch_size")
    expect(diff.locator("tr").nth(0).locator("del")).to_have_text("[4, 8]")
    expect(diff.locator("tr").nth(0).locator("ins")).to_have_text("[2, 4]")
    expect(diff.locator("tr").nth(1)).to_contain_text("dynamic_batching.max_queue_delay_microseconds")
    expect(diff.locator("tr").nth(1).locator("ins")).to_have_text("500")
    expect(rendered).to_contain_text('"max_queue_delay_microseconds": 500')
    expect(rendered).to_contain_text('"preferred_batch_size": [2, 4]')
    assert ServingConfig.objects.count() == 1  # previews write nothing
    ui.screenshot("serving-config-preview")

    # No reason: the service refuses (a 400 that htmx swaps in), the error under the reason field.
    section.get_by_role("button", name="Save revision").click()
    reason_error = page.locator("#err-reason")
    expect(reason_error).to_have_text("Say why you change the config; it goes into the audit log.")
    expect(section.get_by_label("Reason")).to_have_attribute("aria-invalid", "true")
    expect(section.get_by_label("Preferred batch sizes")).to_have_value("2, 4")  # what was typed stays
    assert ServingConfig.objects.count() == 1
    ui.screenshot("serving-config-reason-refused")

    section.get_by_label("Reason").fill("lower latency at low load")
    section.get_by_role("button", name="Save revision").click()
    expect(page.get_by_role("status").filter(has_text="Saved serving config revision 2.")).to_be_visible()
    row = page.locator("tr[data-revision='2']")
    expect(row).to_contain_text("lower latency at low load")
    expect(row).to_contain_text("ada")
    expect(row).to_contain_text("2 fields")
    expect(page.locator("#serving-config h2")).to_contain_text("revision 2")

    row.get_by_role("link", name="diff").click()
    expect(page.locator("#serving-diff")).to_contain_text("Revision 1 → 2")
    expect(page.locator("#serving-diff ins").first).to_have_text("[2, 4]")

    config = ServingConfig.objects.get(model=model, revision=2)
    assert config.spec["dynamic_batching"]["preferred_batch_size"] == [2, 4]
    assert config.spec["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    event = AuditEvent.objects.get(action="serving_config.save", object_id=str(config.pk))
    assert (event.source, event.reason, event.before["revision"]) == ("ui", "lower latency at low load", 1)
    ui.screenshot("serving-config-saved")
    ui.assert_only_local()


def test_viewers_see_the_config_read_only(ui, model, team_admin, viewer):
    serving_config_save(actor=Actor(user=team_admin, source="api"), model=model, spec={"max_batch_size": 4}, reason="smaller")
    ui.sign_in("vic")
    ui.goto(f"/models/{model.pk}/")
    section = ui.page.locator("#serving-config")
    expect(section).to_contain_text("Read-only")
    expect(section.get_by_role("button", name="Save revision")).to_have_count(0)
    expect(section.get_by_role("button", name="Roll back")).to_have_count(0)
    expect(section.get_by_label("Rendered Triton config")).to_contain_text('"max_batch_size": 4')
    ui.assert_only_local()
