"""Hostile text in every free-text field the UI has, and every confirmation clicked both ways.

A token name like HOSTILE once ran as script: the Revoke button's onsubmit="confirm('...')"
decoded &#x27; back into a quote. Now templates hold no code, the CSP forbids inline script,
and static/js/switchyard.js hands user text to confirm()/prompt() as plain strings. Each test
asserts that nothing injected ran (title, window flags, unexpected dialogs), that the dialogs
show the text literally, and that our pages log no CSP violation.
"""
import re

import pytest
from playwright.sync_api import expect

from controlplane.accounts.models import ApiToken, Membership, Role
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.celery import app
from controlplane.fleet.models import Pool, Server
from controlplane.placements import services as placements
from controlplane.placements.models import PlacementTarget
from controlplane.placements.ui import PICKER_SERVERS
from controlplane.registry.labels import label_set
from controlplane.registry.models import LabelMove, VersionLabel
from controlplane.serving.models import ServingConfig
from tests.conftest import _user
from tests.placements.conftest import CLOSED, make_config
from tests.quotas.conftest import make_version

pytestmark = pytest.mark.browser

HOSTILE_JS = "a'+(document.title='PWNED')+'"  # the reported token name: valid JS inside confirm('...')
# Breaks out of a single-quoted JS string, a double-quoted attribute, a <script> block and a
# template literal; each escape sets the title or a window flag if it ever runs.
HOSTILE = """a'+(document.title='PWNED')+'"><img src=x onerror="document.title='PWNED2'">"""
HOSTILE_SCRIPT = """</script><script>window.__pwned=1</script>${window.__pwned=2}'-alert(3)-'"""
HOSTILE_LONG = HOSTILE + " " + HOSTILE_SCRIPT + """ \\');window.__pwned=4;// {{ 7|add:7 }}"""


class Guard:
    """Answers the dialogs the test plans for, records every other one, and collects CSP
    violations (the securitypolicyviolation event and Chromium's console report)."""

    def __init__(self, page):
        self.page = page
        self.plan: list[tuple[bool, str | None]] = []
        self.dialogs: list[tuple[str, str]] = []
        self.unexpected: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.posts: list[str] = []
        page.expose_function("__cspViolation", lambda text: self.violations.append(text))
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e =>"
            " window.__cspViolation([e.violatedDirective, e.blockedURI, e.sample].join(' ')));"
        )
        page.on("console", self._console)
        page.on("dialog", self._dialog)
        page.on("request", lambda r: r.method == "POST" and self.posts.append(r.url))

    def _console(self, message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.violations.append(message.text)

    def _dialog(self, dialog):
        self.dialogs.append((dialog.type, dialog.message))
        if not self.plan:
            self.unexpected.append((dialog.type, dialog.message))
            dialog.dismiss()
            return
        accept, text = self.plan.pop(0)
        if not accept:
            dialog.dismiss()
        elif text is None:
            dialog.accept()
        else:
            dialog.accept(text)

    def answer(self, click, *, accept: bool, text: str | None = None, expect_message: str, kind: str = "confirm"):
        """Click, answer the one dialog that must follow, and check it showed expect_message."""
        seen = len(self.dialogs)
        self.plan.append((accept, text))
        click()
        for _ in range(50):  # the dialog event may arrive just after click() returns
            if len(self.dialogs) > seen:
                break
            self.page.wait_for_timeout(50)
        assert self.dialogs[seen:] == [(kind, expect_message)]
        assert self.plan == []

    def answer_nothing_posted(self, click, **kwargs):
        """As answer(), for a dialog that must stop the form: no POST leaves the page."""
        posts = len(self.posts)
        self.answer(click, **kwargs)
        self.page.wait_for_timeout(300)
        assert self.posts[posts:] == []

    def check(self):
        title = self.page.title()
        assert "PWNED" not in title, title
        assert self.page.evaluate("() => window.__pwned") is None
        assert self.unexpected == []
        assert self.violations == []


@pytest.fixture
def guard(ui):
    return Guard(ui.page)


@pytest.fixture
def hostile_member(team):
    """A user whose name is hostile (made outside the sign-up rules, as an import might)."""
    user = _user(HOSTILE)
    Membership.objects.create(user=user, team=team, role=Role.VIEWER)
    return user


def test_team_page_tokens_and_members(ui, guard, team_admin, hostile_member):
    page = ui.page
    ui.sign_in("ada")
    ui.goto("/team/")
    section = page.locator("section.team-section[data-team=vision]")

    # A team token and a personal token with hostile names: shown once, then listed.
    form = section.locator("form.token-form")
    form.get_by_label("Token name").fill(HOSTILE_JS)
    form.get_by_role("button", name="Issue team token").click()
    expect(page.get_by_role("heading", name=f"New token: {HOSTILE_JS}")).to_be_visible()
    team_token = ApiToken.objects.get(team__slug="vision")
    assert team_token.name == HOSTILE_JS

    # Copy puts the secret on the clipboard (and runs nothing else).
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    secret = page.locator("#new-token-secret").inner_text()
    page.get_by_role("button", name="Copy").click()
    for _ in range(20):
        if page.evaluate("() => navigator.clipboard.readText()") == secret:
            break
        page.wait_for_timeout(100)
    assert page.evaluate("() => navigator.clipboard.readText()") == secret

    personal = page.locator("section.card", has=page.get_by_role("heading", name="Your personal tokens"))
    personal.get_by_label("Token name").fill(HOSTILE_SCRIPT)
    personal.get_by_role("button", name="Issue personal token").click()
    expect(page.get_by_role("heading", name=f"New token: {HOSTILE_SCRIPT}")).to_be_visible()
    personal_token = ApiToken.objects.get(team=None, name=HOSTILE_SCRIPT)
    guard.check()

    # Add member: the name field echoes hostile text back in the error.
    section.locator("form.add-member").get_by_label("Username").fill(HOSTILE_LONG[:150])
    section.get_by_role("button", name="Add member").click()
    expect(section.locator("#vision-member-username_error")).to_contain_text("No active user named")
    guard.check()

    ui.goto("/team/")
    extra = section.locator("form.token-form")
    extra.get_by_label("Token name").fill(HOSTILE)
    extra.get_by_role("button", name="Issue team token").click()
    expect(page.get_by_role("heading", name=f"New token: {HOSTILE}")).to_be_visible()
    markup_token = ApiToken.objects.get(name=HOSTILE)
    ui.goto("/team/")
    for token in (team_token, markup_token, personal_token):
        row = page.locator(f'tr[data-token="{token.prefix}"]')
        expect(row.locator("td").first).to_have_text(token.name)
        message = f"Revoke token {token.prefix} ({token.name})? Anything using it stops working."
        revoke = row.get_by_role("button", name="Revoke")
        guard.answer_nothing_posted(revoke.click, accept=False, expect_message=message)
        token.refresh_from_db()
        assert token.revoked_at is None
        guard.answer(revoke.click, accept=True, expect_message=message)
        expect(page.locator(f'tr[data-token="{token.prefix}"]')).to_contain_text("revoked")
        token.refresh_from_db()
        assert token.revoked_at is not None
        guard.check()

    row = page.locator("tr", has=page.get_by_role("cell", name=HOSTILE, exact=True))
    remove = row.get_by_role("button", name="Remove")
    message = f"Remove {HOSTILE} from vision?"
    guard.answer_nothing_posted(remove.click, accept=False, expect_message=message)
    assert Membership.objects.filter(user=hostile_member).exists()
    guard.answer(remove.click, accept=True, expect_message=message)
    expect(page.get_by_role("status").filter(has_text="was removed")).to_be_visible()
    assert not Membership.objects.filter(user=hostile_member).exists()
    ui.screenshot("hostile-team-page")
    guard.check()
    ui.assert_only_local()


@pytest.fixture
def hostile_model(model, team_admin):
    """fraud-scorer with a hostile description, three versions, the stable label, two serving
    config revisions, and a placement whose targets failed with a hostile Triton error."""
    model.description = HOSTILE_LONG
    model.save(update_fields=["description"])
    for n in (1, 2, 3):
        make_version(model, n)
    actor = Actor(user=team_admin, source="api")
    label_set(actor=actor, model=model, name="stable", version=1, reason=HOSTILE)
    make_config(model, 1, {"dynamic_batching": {}}, user=team_admin)
    make_config(model, 2, {"dynamic_batching": {"max_queue_delay_microseconds": 500}}, user=team_admin)
    pool = Pool.objects.create(name="cpu")
    # More servers than the picker lists, so the form has a free-text "Servers" field.
    Server.objects.bulk_create(
        Server(name=f"triton-{i:02d}", pool=pool, http_url=CLOSED) for i in range(PICKER_SERVERS + 1)
    )
    servers = list(Server.objects.order_by("name")[:2])
    placement, _ = placements.placement_create(actor=actor, model=model, versions=[1], servers=servers)
    PlacementTarget.objects.filter(placement=placement).update(state="failed", error=HOSTILE_LONG)
    yield model, placement
    app.control.purge()  # the tasks the page queued, which no worker runs here


def test_model_page_labels_serving_and_placements(ui, guard, hostile_model):
    model, placement = hostile_model
    page = ui.page
    ui.sign_in("ada")
    ui.goto(f"/models/{model.pk}/")
    expect(page.get_by_text(HOSTILE_LONG, exact=True).first).to_be_visible()  # the description, as text
    expect(page.locator("table.label-history")).to_contain_text(HOSTILE)

    # The move dialog: opens, previews the chosen version, cancels, then moves with a hostile reason.
    row = page.locator("tr[data-label=stable]")
    dialog = page.locator("dialog#move-stable")
    row.get_by_role("button", name="Move…").click()
    expect(dialog).to_be_visible()
    dialog.get_by_label("To version").select_option("3")
    expect(dialog.locator(".move-summary")).to_have_text("stable: v1 → v3")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    row.get_by_role("button", name="Move…").click()
    dialog.get_by_label("To version").select_option("2")
    dialog.get_by_label("Reason").fill(HOSTILE_LONG)
    ui.screenshot("hostile-label-move-dialog")
    dialog.get_by_role("button", name="Move label").click()
    expect(page.get_by_role("status").filter(has_text="stable now points at v2")).to_be_visible()
    expect(page.locator("table.label-history tbody tr").first).to_contain_text(HOSTILE_LONG)
    guard.check()

    # A new label: a hostile name is refused with a message; a hostile reason is kept as text.
    new = page.locator("form.new-label")
    new.get_by_label("New label").evaluate("e => e.removeAttribute('pattern')")  # let the server judge it
    new.get_by_label("New label").fill(HOSTILE)
    new.get_by_label("Reason").fill(HOSTILE_SCRIPT)
    new.get_by_role("button", name="Create label").click()
    expect(page.locator("form.new-label #new-label-name_error")).to_contain_text("A label is")
    expect(page.locator("form.new-label").get_by_label("New label")).to_have_value(HOSTILE)  # kept, as text
    assert not VersionLabel.objects.filter(model=model).exclude(name="stable").exists()
    new = page.locator("form.new-label")
    new.get_by_label("New label").fill("canary")
    new.get_by_label("Reason").fill(HOSTILE_SCRIPT)
    new.get_by_role("button", name="Create label").click()
    expect(page.locator("tr[data-label=canary]")).to_be_visible()
    guard.check()

    # Delete asks for a reason: cancel and blank keep the label; a hostile reason is stored as text.
    delete = page.locator("tr[data-label=canary]").get_by_role("button", name="Delete")
    ask = "Delete label canary? Give a reason:"
    guard.answer_nothing_posted(delete.click, accept=False, expect_message=ask, kind="prompt")
    guard.answer_nothing_posted(delete.click, accept=True, text="", expect_message=ask, kind="prompt")
    guard.answer_nothing_posted(delete.click, accept=True, text="   ", expect_message=ask, kind="prompt")
    assert VersionLabel.objects.filter(model=model, name="canary").exists()
    guard.answer(delete.click, accept=True, text=HOSTILE_LONG, expect_message=ask, kind="prompt")
    expect(page.locator("tr[data-label=canary]")).to_have_count(0)
    assert LabelMove.objects.filter(model=model, label="canary", to_version=None).get().reason == HOSTILE_LONG
    guard.check()

    # The serving editor: hostile text in every text field, previewed and refused by the server.
    editor = page.locator("form.serving-form")
    for name in ("max_batch_size", "preferred_batch_size", "max_queue_delay_microseconds", "priority_levels",
                 "default_priority_level", "default_timeout_microseconds", "max_queue_size", "instance_count",
                 "instance_gpus", "num_versions", "versions", "model_warmup", "reason"):
        editor.locator(f"[name={name}]").fill(HOSTILE)
    expect(page.locator("#serving-preview .preview-errors")).to_be_visible()
    editor.get_by_role("button", name="Save revision").click()
    expect(page.locator("#serving-config .field-error").filter(has_text=re.compile(r"\S")).first).to_be_visible()
    assert ServingConfig.objects.filter(model=model).count() == 2
    guard.check()

    # Roll back asks for a reason through htmx's prompt: cancel sends nothing; then it goes through.
    ui.goto(f"/models/{model.pk}/")
    rollback = page.locator("tr[data-revision='1']").get_by_role("button", name="Roll back")
    ask = "Roll back to revision 1? This saves it as a new revision. Reason:"
    guard.answer_nothing_posted(rollback.click, accept=False, expect_message=ask, kind="prompt")
    guard.answer(rollback.click, accept=True, text=HOSTILE, expect_message=ask, kind="prompt")
    expect(page.locator("tr[data-revision='3']")).to_contain_text(HOSTILE)
    assert ServingConfig.objects.get(model=model, revision=3).reason == HOSTILE
    guard.check()

    # Placements: a hostile server name is refused; retry and remove confirm, both ways.
    form = page.get_by_role("form", name="New placement")
    form.get_by_label("Servers").fill(HOSTILE)
    form.get_by_role("button", name="Place").click()
    expect(page.locator("#placement-servers_error")).to_contain_text("No server named")
    guard.check()
    ui.goto(f"/models/{model.pk}/")
    card = page.get_by_role("article", name=f"Placement {placement.pk}")
    expect(card.locator(".target-error").first).to_contain_text(HOSTILE)
    ui.screenshot("hostile-model-page")
    retry = card.get_by_role("button", name="Retry failed")
    message = f"Load placement {placement.pk} again on its failed and stuck servers?"
    guard.answer_nothing_posted(retry.click, accept=False, expect_message=message)
    guard.answer(retry.click, accept=True, expect_message=message)
    expect(page.get_by_role("status").first).to_be_visible()
    assert set(PlacementTarget.objects.filter(placement=placement).values_list("state", flat=True)) == {"pending"}
    remove = page.get_by_role("article", name=f"Placement {placement.pk}").get_by_role("button", name="Remove")
    message = f"Remove placement {placement.pk}? {model.triton_name} is unloaded from 2 server(s)."
    guard.answer_nothing_posted(remove.click, accept=False, expect_message=message)
    guard.answer(remove.click, accept=True, expect_message=message)
    expect(page.get_by_role("article", name=f"Placement {placement.pk}")).to_have_count(0)
    guard.check()
    assert AuditEvent.objects.filter(action="label.delete", reason=HOSTILE_LONG).count() == 1
    ui.assert_only_local()


def test_filters_sign_in_and_audit_echo_text_without_running_it(ui, guard, deployer):
    page = ui.page
    ui.goto("/login/")
    page.get_by_label("Username").fill(HOSTILE)
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Username")).to_have_value(HOSTILE)
    guard.check()

    ui.sign_in("dana")
    forms = {
        "/models/": ["Search", "Team"],
        "/fleet/": ["Pool", "Name"],
        "/audit/": ["Actor", "Action", "Object type", "Object id", "Search"],
    }
    for path, labels in forms.items():
        ui.goto(path)
        form = page.locator("form.filters").first
        for label in labels:
            form.get_by_label(label, exact=True).fill(HOSTILE_LONG)
        form.get_by_role("button", name="Filter").click()
        expect(form.get_by_label(labels[0], exact=True)).to_have_value(HOSTILE_LONG)
        guard.check()
    # The audit log lists what other tests' hostile text looks like in events, as text.
    assert page.title() == "Audit log · Switchyard"
    ui.assert_only_local()


def test_swagger_ui_works_under_its_policy(ui, guard, deployer):
    ui.sign_in("dana")
    ui.goto("/api/docs/")
    expect(ui.page.locator(".swagger-ui .info .title")).to_contain_text("Switchyard API")
    expect(ui.page.locator(".opblock-tag").first).to_be_visible()
    guard.check()


def test_the_policy_blocks_injected_markup_and_the_guard_sees_it(ui, guard, deployer):
    """If markup ever slipped through the escaping, the CSP would still refuse to run it; and the
    violation would fail the checks above (this proves the guard is not blind)."""
    ui.sign_in("dana")
    ui.goto("/team/")
    ui.page.evaluate("""() => document.body.insertAdjacentHTML('beforeend', '<img src="/no-such.png" onerror="window.__pwned=9">')""")
    ui.page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__pwned=10'; document.body.append(s); }""")
    for _ in range(40):
        if len(guard.violations) >= 2:
            break
        ui.page.wait_for_timeout(50)
    assert ui.page.evaluate("() => window.__pwned") is None
    assert any("script-src" in v for v in guard.violations), guard.violations
    with pytest.raises(AssertionError):
        guard.check()


def test_the_admin_works_under_the_policy(ui, guard, platform_admin, model):
    """Django's admin ships without inline script; it keeps working under our policy."""
    platform_admin.is_superuser = True
    platform_admin.save(update_fields=["is_superuser"])
    model.description = HOSTILE
    model.save(update_fields=["description"])
    ui.sign_in("pat")
    for path in ("/admin/", "/admin/registry/model/", f"/admin/registry/model/{model.pk}/change/",
                 "/admin/auth/user/", f"/admin/auth/user/{platform_admin.pk}/change/", "/admin/audit/auditevent/"):
        response = ui.goto(path)
        assert response.status == 200, path
        expect(ui.page.locator("#site-name")).to_be_visible()
        guard.check()
