"""A release engineer moves a label in the browser: the dialog shows from and to and asks why."""
import pytest
from playwright.sync_api import expect

from controlplane.audit.models import AuditEvent
from controlplane.registry.models import LabelMove, ModelVersion, VersionLabel, VersionStatus

pytestmark = pytest.mark.browser


@pytest.fixture
def released(model, deployer):
    from controlplane.audit.context import Actor
    from controlplane.registry.labels import label_set

    for n in (1, 2, 3):
        ModelVersion.objects.create(model=model, version=n, status=VersionStatus.READY, artifact_uri=f"s3://b/r/{n}/", checksum=f"sha256:{n}")
    label_set(actor=Actor(user=deployer, source="api"), model=model, name="stable", version=1, reason="first release")
    return model


def test_move_a_label_with_the_dialog(ui, released):
    ui.sign_in("dana")
    ui.goto(f"/models/{released.pk}/")
    row = ui.page.locator("tr[data-label=stable]")
    expect(row).to_contain_text("v1")
    row.get_by_role("button", name="Move…").click()
    dialog = ui.page.locator("dialog#move-stable")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".move-summary")).to_have_text("stable: v1 → v1")
    dialog.get_by_label("To version").select_option("3")
    expect(dialog.locator(".move-summary")).to_have_text("stable: v1 → v3")
    ui.screenshot("label-move-dialog")
    dialog.get_by_role("button", name="Move label").click()
    expect(dialog).to_be_visible()  # the reason is required: the browser keeps the dialog open
    dialog.get_by_label("Reason").fill("v3 passed canary")
    dialog.get_by_role("button", name="Move label").click()

    expect(ui.page.get_by_role("status").filter(has_text="stable now points at v3")).to_be_visible()
    expect(ui.page.locator("tr[data-label=stable]")).to_contain_text("v3")
    history = ui.page.locator("table.label-history tbody tr").first
    expect(history).to_contain_text("v1")
    expect(history).to_contain_text("v3")
    expect(history).to_contain_text("v3 passed canary")
    assert VersionLabel.objects.get(name="stable").version.version == 3
    move = LabelMove.objects.order_by("-id").first()
    assert (move.from_version.version, move.to_version.version, move.source) == (1, 3, "ui")
    assert AuditEvent.objects.filter(action="label.move", source="ui", reason="v3 passed canary").count() == 1
    ui.screenshot("labels-after-move")
    ui.assert_only_local()


def test_viewers_see_labels_without_controls(ui, released, viewer):
    ui.sign_in("vic")
    ui.goto(f"/models/{released.pk}/")
    expect(ui.page.locator("tr[data-label=stable]")).to_contain_text("v1")
    expect(ui.page.get_by_role("button", name="Move…")).to_have_count(0)


def test_a_refused_move_reopens_the_dialog_with_the_error_under_the_reason(ui, released):
    ui.sign_in("dana")
    ui.goto(f"/models/{released.pk}/")
    ui.page.locator("tr[data-label=stable]").get_by_role("button", name="Move…").click()
    dialog = ui.page.locator("dialog#move-stable")
    dialog.get_by_label("To version").select_option("2")
    dialog.get_by_label("Reason").fill("   ")  # passes the browser's required check; the service refuses it
    dialog.get_by_role("button", name="Move label").click()

    dialog = ui.page.locator("dialog#move-stable")
    expect(dialog).to_be_visible()  # opened again by switchyard.js (data-show-modal)
    reason = dialog.get_by_label("Reason")
    expect(reason).to_have_attribute("aria-invalid", "true")
    error = dialog.locator("#move-stable-reason_error")
    expect(error).to_have_text("Say why: moving a label is a release.")
    expect(dialog.get_by_label("To version")).to_have_value("2")
    expect(dialog.locator(".move-summary")).to_have_text("stable: v1 → v2")
    ui.screenshot("label-move-refused")
    assert VersionLabel.objects.get(name="stable").version.version == 1
    assert not AuditEvent.objects.filter(action="label.move").exists()

    reason.fill("v2 fixes drift")
    dialog.get_by_role("button", name="Move label").click()
    expect(ui.page.get_by_role("status").filter(has_text="stable now points at v2")).to_be_visible()
    assert VersionLabel.objects.get(name="stable").version.version == 2
