"""Team admins add a member and issue a token in the browser; the secret shows once."""
import pytest
from playwright.sync_api import expect

from controlplane.accounts.models import ApiToken, Membership, Role
from controlplane.accounts.tokens import hash_token
from tests.conftest import _user

pytestmark = pytest.mark.browser


@pytest.fixture
def team_admin(team, viewer):
    user = _user("ada")
    Membership.objects.create(user=user, team=team, role=Role.ADMIN)
    _user("nia")
    return user


def test_add_member_and_change_role(ui, team_admin):
    ui.sign_in("ada")
    ui.goto("/team/")
    section = ui.page.locator("section.team-section[data-team=vision]")
    section.get_by_label("Username").fill("nia")
    section.locator("form.add-member select[name=role]").select_option("deployer")
    section.get_by_role("button", name="Add member").click()
    expect(ui.page.get_by_role("status").filter(has_text="nia is now deployer in vision")).to_be_visible()
    row = ui.page.locator("tr[data-member=nia]")
    expect(row.get_by_label("Role of nia")).to_have_value("deployer")
    assert Membership.objects.get(user__username="nia").role == Role.DEPLOYER

    row.get_by_label("Role of nia").select_option("viewer")
    row.get_by_role("button", name="Save").click()
    expect(ui.page.get_by_role("status").filter(has_text="nia is now viewer")).to_be_visible()
    assert Membership.objects.get(user__username="nia").role == Role.VIEWER

    ui.page.once("dialog", lambda dialog: dialog.accept())
    ui.page.locator("tr[data-member=vic]").get_by_role("button", name="Remove").click()
    expect(ui.page.get_by_role("status").filter(has_text="vic was removed")).to_be_visible()
    expect(ui.page.locator("tr[data-member=vic]")).to_have_count(0)

    ui.page.locator("tr[data-member=ada]").get_by_label("Role of ada").select_option("viewer")
    ui.page.locator("tr[data-member=ada]").get_by_role("button", name="Save").click()
    expect(ui.page.get_by_role("alert")).to_contain_text("last admin")
    ui.screenshot("team-members")
    ui.assert_only_local()


def test_issue_a_team_token_shown_once_then_revoke(ui, team_admin):
    ui.sign_in("ada")
    ui.goto("/team/")
    form = ui.page.locator("section.team-section[data-team=vision] form.token-form")
    form.get_by_label("Token name").fill("github-actions")
    form.get_by_label("deploy").check()
    form.get_by_role("button", name="Issue team token").click()

    secret = ui.page.locator("#new-token-secret").inner_text()
    token = ApiToken.objects.get(name="github-actions")
    assert secret.startswith(f"sy_{token.prefix}_") and token.secret_hash == hash_token(secret)
    assert token.team.slug == "vision" and token.scopes == ["read", "deploy"]
    expect(ui.page.get_by_text("will not show it again")).to_be_visible()
    ui.screenshot("team-token-issued")

    ui.goto("/team/")
    expect(ui.page.locator("#new-token-secret")).to_have_count(0)
    assert secret not in ui.page.content()
    row = ui.page.locator(f"tr[data-token=\"{token.prefix}\"]")
    expect(row).to_contain_text("github-actions")
    expect(row).to_contain_text("never")
    ui.page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(ui.page.locator(f"tr[data-token=\"{token.prefix}\"]")).to_contain_text("revoked")
    token.refresh_from_db()
    assert token.revoked_at is not None
    ui.screenshot("team-page")
    ui.assert_only_local()


def test_an_unknown_username_shows_its_error_under_the_field(ui, team_admin):
    ui.sign_in("ada")
    ui.goto("/team/")
    section = ui.page.locator("section.team-section[data-team=vision]")
    section.get_by_label("Username").fill("ghost")
    section.get_by_role("button", name="Add member").click()
    section = ui.page.locator("section.team-section[data-team=vision]")
    field = section.get_by_label("Username")
    expect(field).to_have_value("ghost")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(section.locator("#vision-member-username_error")).to_have_text("No active user named 'ghost'.")
    ui.screenshot("team-member-refused")
    assert not Membership.objects.filter(user__username="ghost").exists()


def test_a_platform_admin_sets_a_team_quota_on_the_team_page(ui, team_admin, platform_admin):
    from controlplane.audit.models import AuditEvent
    from controlplane.quotas.models import GpuQuota

    ui.sign_in("ada")
    ui.goto("/team/")
    expect(ui.page.get_by_role("button", name="Set quota")).to_have_count(0)  # a team admin may not
    ui.sign_in(platform_admin.username)
    ui.goto("/team/")
    section = ui.page.locator("section.team-section[data-team=vision]")
    section.get_by_label("GPU quota (devices)").fill("6")
    section.get_by_label("Reason").fill("more canaries")
    section.get_by_role("button", name="Set quota").click()
    expect(ui.page.get_by_role("status").filter(has_text="vision's GPU quota is now 6")).to_be_visible()
    expect(section.locator(".quota-numbers")).to_contain_text("of 6 GPUs held")
    assert GpuQuota.objects.get(team__slug="vision").gpus == 6
    event = AuditEvent.objects.get(action="quota.set")
    assert (event.after, event.reason, event.actor_name) == ({"gpus": 6}, "more canaries", platform_admin.username)
    ui.screenshot("team-quota")
    ui.assert_only_local()
