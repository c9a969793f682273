"""The deployment page on the database: its live part (state, traffic, progress, history, gates,
green's servers), the actions each state offers and their refusals (400 next to the reason, 409
with the state's message, 403 for a viewer, 404 for another team), the RollbackFailed banner on
every page of the team, and query counts that stay the same as history and evaluations grow."""
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.deployments import services
from controlplane.deployments.machine import State
from controlplane.deployments.models import (
    Deployment,
    DeploymentTransition,
    GateEvaluation,
)
from controlplane.deployments.selectors import PAGE_EVALUATIONS, PAGE_TRANSITIONS
from controlplane.endpoints.services import endpoint_create
from controlplane.placements.models import PlacementTarget, TargetState
from tests.deployments.conftest import body, counts, create, drive, events, place_ready

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "deployment-live"}
BUTTON = re.compile(r'<button type="button" class="[^"]*" data-open-dialog="act-(\w+)" data-action="\w+">([^<]+)</button>')


@pytest.fixture
def signed_in(client, deployer):
    client.force_login(deployer)
    return client


def page(d) -> str:
    return f"/deployments/{d.pk}/"


def live(d) -> str:
    return f"/deployments/{d.pk}/live/"


def act(d, action: str) -> str:
    return f"/deployments/{d.pk}/act/{action}/"


def buttons(html: str) -> list[str]:
    return [label for _, label in BUTTON.findall(html)]


def state_of(html: str) -> str:
    found = re.findall(r'<span class="deploy-state [\w-]+" data-state="(\w+)">\1</span>', html)
    assert len(found) == 1, found
    return found[0]


# -- the live part ---------------------------------------------------------------------------------


def test_page_shows_state_traffic_progress_history_and_refreshes_every_second(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer, bake_s=120), State.BAKING)
    Deployment.objects.filter(pk=d.pk).update(step_started_at=timezone.now() - timedelta(seconds=30))
    html = signed_in.get(page(d)).content.decode()
    assert state_of(html) == "baking"
    assert 'data-traffic="10">10%</span> to green v2' in html
    assert '<progress class="bar split" max="100" value="10"' in html
    assert "Step 1 of 1" in html
    # 30 s of the 120 s bake have run: 90 s (or 89 s, a second later) left, a quarter of the bar
    assert re.search(r"<b>(1 min 30 s|1 min 29 s)</b> left of the 2 min bake", html), html
    assert '<progress class="bar bake" max="100" value="25"' in html
    assert f'hx-get="/deployments/{d.pk}/live/" hx-trigger="every 1s" hx-swap="outerHTML"' in html
    # the history, newest first, each with who or what caused it
    history = re.findall(r'data-transition="(\w+)"', html)
    assert history == ["baking", "shifting", "verifying", "provisioning", "validating", "pending"]
    assert "by <b>dana</b> <span class=\"muted\">(api)</span>" in html  # created through the service as dana
    assert "by <b>worker</b>" in html
    # no script or style of its own: the CSP allows neither inline
    assert "<script>" not in html and "style=" not in html and " on" + "click=" not in html


def test_live_partial_is_the_live_part_only(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.PAUSED)
    Deployment.objects.filter(pk=d.pk).update(status_text="No data: error_ratio: 3 requests in 60 s")
    response = signed_in.get(live(d))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="deployment-live"')
    assert "<html" not in html and "rollback-failed-banner" not in html
    assert state_of(html) == "paused"
    assert "No data: error_ratio: 3 requests in 60 s" in html


@pytest.mark.parametrize("state, expected", [
    (State.PENDING, ["Roll back", "Abort"]),
    (State.BAKING, ["Promote", "Roll back", "Abort"]),
    (State.ANALYZING, ["Promote", "Roll back", "Abort"]),
    (State.PAUSED, ["Promote", "Resume", "Roll back", "Abort"]),
    (State.AWAITING_APPROVAL, ["Promote", "Approve", "Roll back", "Abort"]),
    (State.PROMOTING, ["Roll back", "Abort"]),
    (State.SUCCEEDED, ["Fast rollback"]),
    (State.ROLLING_BACK, []),
    (State.ROLLED_BACK, []),
    (State.FAILED, ["Retry"]),
    (State.ROLLBACK_FAILED, ["Retry"]),
    (State.RETIRED, []),
])
def test_buttons_are_the_actions_the_state_allows(signed_in, label_endpoint, as_deployer, state, expected):
    d = create(as_deployer, rollback_window_s=600)
    if state != State.PENDING:
        d = drive(d, state)
    html = signed_in.get(page(d)).content.decode()
    assert buttons(html) == expected
    # each button opens its own dialog: Reason, Confirm, Keep it
    for name, _ in BUTTON.findall(html):
        dialog = re.search(rf'<dialog id="act-{name}".*?</dialog>', html, re.DOTALL).group(0)
        assert f'action="/deployments/{d.pk}/act/{name}/"' in dialog
        assert f'<label for="act-{name}-reason">Reason</label>' in dialog and "<textarea" in dialog
        assert ">Confirm</button>" in dialog and ">Keep it</button>" in dialog
    if not expected:
        assert "takes none" in html


def test_a_scheduled_deployment_offers_cancel(signed_in, label_endpoint, as_deployer):
    d = create(as_deployer, start_at=(timezone.now() + timedelta(hours=1)).isoformat())
    assert buttons(signed_in.get(page(d)).content.decode()) == ["Cancel"]


def test_a_fast_rollback_says_the_window_left(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer, rollback_window_s=600), State.SUCCEEDED)
    html = signed_in.get(page(d)).content.decode()
    assert re.search(r"Rollback window: <b>(10 min|9 min 59 s)</b> left", html)
    assert "Fast rollback: the label moves back to blue v1" in html


def test_a_viewer_sees_the_page_without_buttons(client, viewer, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    client.force_login(viewer)
    html = client.get(page(d)).content.decode()
    assert state_of(html) == "analyzing" and buttons(html) == []
    assert "cannot act on deployments" in html


# -- gates and green's servers ----------------------------------------------------------------------


def evaluation(d, gate, value, verdict, *, requests=120, limit=0.05, at=None):
    return GateEvaluation(deployment=d, step_index=0, gate=gate, value=value, limit=limit, requests=requests, window_s=60,
                          verdict=verdict, detail=f"{gate} {verdict}", at=at or timezone.now())


def test_gates_show_each_configured_gate_latest_value_limit_and_requests(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer, gates={"max_error_ratio": 0.05, "max_p99_ms": 250, "min_requests": 50}), State.ANALYZING)
    GateEvaluation.objects.bulk_create([
        evaluation(d, "error_ratio", 0.2, "fail"),
        evaluation(d, "error_ratio", 0.0123, "pass", requests=431),  # the latest of its gate
        evaluation(d, "p99_ms", None, "no_data", requests=12, limit=250),
    ])
    html = signed_in.get(page(d)).content.decode()
    board = re.search(r'<table class="compact gate-board">.*?</table>', html, re.DOTALL).group(0)
    rows = dict(re.findall(r'<tr data-gate="([\w:]+)">(.*?)</tr>', board, re.DOTALL))
    assert list(rows) == ["error_ratio", "p99_ms", "guard"]
    assert "≤ 5.00%" in rows["error_ratio"] and "1.23%" in rows["error_ratio"] and "431" in rows["error_ratio"]
    assert "of 50 needed" in rows["error_ratio"] and 'class="verdict pass"' in rows["error_ratio"]
    assert "≤ 250.0 ms" in rows["p99_ms"] and "12" in rows["p99_ms"] and 'class="verdict no_data"' in rows["p99_ms"]
    assert "armed: not tripped" in rows["guard"]
    assert "3 in all" in html
    assert re.findall(r'<tr data-verdict="(\w+)">', html) == ["no_data", "pass", "fail"]  # every one, newest first


def test_evaluations_are_bounded_and_say_how_many_are_hidden(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    GateEvaluation.objects.bulk_create([evaluation(d, "error_ratio", 0.01, "pass") for _ in range(130)])
    html = signed_in.get(live(d)).content.decode()
    assert PAGE_EVALUATIONS == 30
    assert len(re.findall(r"<tr data-verdict=", html)) == 30
    assert "130 in all; the latest 30 shown, 100 older hidden" in html


def test_green_servers_show_their_load_state_and_errors(signed_in, label_endpoint, as_deployer, model, servers):
    d = drive(create(as_deployer), State.PROVISIONING)
    green = place_ready(model, [1, 2], servers[1:], state=TargetState.LOADING)  # blue is on cpu-1
    PlacementTarget.objects.filter(placement=green, server=servers[2]).update(
        state=TargetState.FAILED, error="failed to load 'vision--fraud-scorer' version 2: <boom>")
    Deployment.objects.filter(pk=d.pk).update(green_placement=green)
    html = signed_in.get(live(d)).content.decode()
    rows = dict(re.findall(r'<tr data-server="([\w-]+)" class="state-\w+">(.*?)</tr>', html, re.DOTALL))
    assert list(rows) == ["cpu-2", "cpu-3"]
    assert "Loading" in rows["cpu-2"] and "Failed" in rows["cpu-3"]
    assert "version 2: &lt;boom&gt;" in rows["cpu-3"]  # Triton's text, escaped


def test_green_not_placed_yet_says_so(signed_in, label_endpoint, as_deployer):
    d = create(as_deployer)
    assert "Green is not placed yet" in signed_in.get(live(d)).content.decode()


# -- actions --------------------------------------------------------------------------------------


def test_promote_through_htmx_moves_it_writes_history_and_audit_and_answers_the_live_part(signed_in, label_endpoint,
                                                                                         as_deployer, deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    response = signed_in.post(act(d, "promote"), {"reason": "numbers look fine"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    d.refresh_from_db()
    assert d.state == State.PROMOTING and d.traffic_percent == 100
    assert state_of(html) == "promoting" and 'data-traffic="100"' in html
    assert '<div id="rollback-failed-banner" hidden hx-swap-oob="true">' in html  # the banner, refreshed too
    t = DeploymentTransition.objects.filter(deployment=d).latest("id")
    assert (t.event, t.actor_name, t.source, t.reason) == ("promote", "dana", "ui", "numbers look fine")
    [event] = events("deployment.promote")
    assert (event.actor_user_id, event.source, event.reason) == (deployer.pk, "ui", "numbers look fine")
    assert event.after["state"] == "promoting"


def test_a_plain_form_post_redirects_back_to_the_page(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    response = signed_in.post(act(d, "rollback"), {"reason": "p99 doubled"})
    assert response.status_code == 302 and response["Location"] == page(d)
    d.refresh_from_db()
    assert d.state == State.ROLLING_BACK
    assert [e.reason for e in events("deployment.rollback")] == ["p99 doubled"]
    html = signed_in.get(page(d)).content.decode()
    assert f"Roll back: deployment {d.pk} is now rolling back." in html


def test_fast_rollback_from_succeeded(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer, rollback_window_s=600), State.SUCCEEDED)
    response = signed_in.post(act(d, "rollback"), {"reason": "customers complain"}, **HTMX)
    assert response.status_code == 200
    d.refresh_from_db()
    assert d.state == State.ROLLING_BACK


@pytest.mark.parametrize("reason", ["", "   \n "])
def test_a_blank_reason_is_400_next_to_the_field_and_writes_nothing(signed_in, label_endpoint, as_deployer, reason):
    d = drive(create(as_deployer), State.ANALYZING)
    before = counts()
    response = signed_in.post(act(d, "promote"), {"reason": reason}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 400
    assert counts() == before
    d.refresh_from_db()
    assert d.state == State.ANALYZING
    dialog = re.search(r'<dialog id="act-promote".*?</dialog>', html, re.DOTALL).group(0)
    assert "data-show-modal" in dialog  # it comes back open
    assert 'aria-invalid="true"' in dialog
    assert re.search(r'<ul class="errorlist" id="act-promote-reason_error"><li>Give a reason: it goes into the history '
                     r"and the audit log.</li></ul>", dialog)


def test_a_blank_reason_without_htmx_is_the_page_with_the_dialog_open(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    response = signed_in.post(act(d, "abort"), {"reason": ""})
    html = response.content.decode()
    assert response.status_code == 400
    assert "<html" in html and re.search(r'<dialog id="act-abort"[^>]*data-show-modal', html)


def test_an_action_the_state_refuses_is_409_with_the_message(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.ROLLED_BACK)
    before = counts()
    response = signed_in.post(act(d, "promote"), {"reason": "try anyway"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 409
    assert counts() == before
    dialog = re.search(r'<dialog id="act-promote"[^>]*data-show-modal.*?</dialog>', html, re.DOTALL).group(0)
    assert 'role="alert"' in dialog
    assert "<li>A deployment that is rolled back cannot be promoted (only while green takes traffic).</li>" in dialog
    assert ">Confirm</button>" not in dialog and ">Keep it</button>" in dialog  # nothing left to confirm
    assert buttons(html) == [] and state_of(html) == "rolled_back"


def test_an_expired_rollback_window_is_409(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer, rollback_window_s=60), State.SUCCEEDED)
    Deployment.objects.filter(pk=d.pk).update(succeeded_at=timezone.now() - timedelta(seconds=61))
    response = signed_in.post(act(d, "rollback"), {"reason": "too late"}, **HTMX)
    assert response.status_code == 409
    assert "The rollback window is over" in response.content.decode()


def test_a_viewer_acting_is_403_and_writes_nothing(client, viewer, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    client.force_login(viewer)
    before = counts()
    response = client.post(act(d, "promote"), {"reason": "I want it"}, **HTMX)
    assert response.status_code == 403
    assert counts() == before
    assert re.search(r'<dialog id="act-promote"[^>]*data-show-modal', response.content.decode())


def test_another_teams_deployment_is_404_for_the_page_the_partial_and_the_actions(client, outsider, label_endpoint,
                                                                                 as_deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    client.force_login(outsider)
    before = counts()
    assert client.get(page(d)).status_code == 404
    assert client.get(live(d)).status_code == 404
    assert client.post(act(d, "promote"), {"reason": "mine now"}, **HTMX).status_code == 404
    assert client.post(act(d, "rollback"), {"reason": "mine now"}).status_code == 404
    assert counts() == before
    d.refresh_from_db()
    assert d.state == State.ANALYZING
    assert client.get("/deployments/999999/").status_code == 404


def test_an_unknown_action_is_404(signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    assert signed_in.post(act(d, "explode"), {"reason": "x"}).status_code == 404


def test_the_page_is_for_signed_in_people_and_act_takes_post_only(client, signed_in, label_endpoint, as_deployer):
    d = drive(create(as_deployer), State.ANALYZING)
    assert signed_in.get(act(d, "promote")).status_code == 405
    signed_in.logout()
    assert client.get(page(d)).status_code == 302
    assert client.post(act(d, "promote"), {"reason": "x"}).status_code == 302
    d.refresh_from_db()
    assert d.state == State.ANALYZING


def test_an_action_asked_from_another_page_by_htmx_goes_to_the_deployment(signed_in, label_endpoint, as_deployer):
    d = create(as_deployer, start_at=(timezone.now() + timedelta(hours=1)).isoformat())
    response = signed_in.post(act(d, "cancel"), {"reason": "not tonight"}, HTTP_HX_REQUEST="true",
                              HTTP_HX_TARGET="scheduled")
    assert response.status_code == 204 and response["HX-Redirect"] == page(d)
    d.refresh_from_db()
    assert d.state == State.CANCELLED
    refused = signed_in.post(act(d, "cancel"), {"reason": "again"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="scheduled")
    assert refused.status_code == 409
    assert "Cancel was refused." in refused.content.decode() and "cannot be cancelled" in refused.content.decode()


# -- the RollbackFailed banner ---------------------------------------------------------------------------


def banner(html: str) -> str | None:
    found = re.search(r'<div id="rollback-failed-banner" class="rollback-failed-banner" role="alert".*?</div>', html, re.DOTALL)
    return found.group(0) if found else None


def test_rollback_failed_banner_on_every_page_of_the_team_until_someone_acts(client, signed_in, label_endpoint,
                                                                             as_deployer, outsider, foreign):
    d = drive(create(as_deployer), State.ROLLBACK_FAILED)
    Deployment.objects.filter(pk=d.pk).update(status_text="cpu-1 did not answer the unload")
    for path in ("/endpoints/", "/deployments/", "/", page(d)):
        shown = banner(signed_in.get(path).content.decode())
        assert shown is not None, path
        assert f'href="/deployments/{d.pk}/"' in shown and "cpu-1 did not answer the unload" in shown
    # another team never sees it
    other = type(client)()
    other.force_login(outsider)
    assert banner(other.get("/endpoints/").content.decode()) is None
    # someone retries the rollback: it leaves rollback_failed, and the banner goes (at once in the answer, too)
    response = signed_in.post(act(d, "retry"), {"reason": "cpu-1 is back"}, **HTMX)
    assert response.status_code == 200
    assert '<div id="rollback-failed-banner" hidden hx-swap-oob="true">' in response.content.decode()
    d.refresh_from_db()
    assert d.state == State.ROLLING_BACK
    assert banner(signed_in.get("/endpoints/").content.decode()) is None


def test_banner_shows_only_the_users_own_teams(client, label_endpoint, as_deployer, deployer, outsider, foreign):
    theirs = services.deployment_create(actor=Actor(user=outsider, source="api"),
                                        data=body(endpoint="speech.asr", version=2, reason="speech"))
    theirs = drive(theirs, State.ROLLBACK_FAILED)
    client.force_login(deployer)
    assert banner(client.get("/endpoints/").content.decode()) is None
    client.force_login(outsider)
    shown = banner(client.get("/endpoints/").content.decode())
    assert shown is not None and f"/deployments/{theirs.pk}/" in shown and "speech.asr" in shown


def test_a_platform_admin_sees_every_teams_banner_and_many_are_counted(client, platform_admin, label_endpoint,
                                                                     as_deployer, outsider, foreign):
    ours = drive(create(as_deployer), State.ROLLBACK_FAILED)
    theirs = drive(services.deployment_create(actor=Actor(user=outsider, source="api"),
                                              data=body(endpoint="speech.asr", version=2, reason="speech")),
                   State.ROLLBACK_FAILED)
    client.force_login(platform_admin)
    shown = banner(client.get("/fleet/").content.decode())
    assert f"/deployments/{ours.pk}/" in shown and f"/deployments/{theirs.pk}/" in shown
    # more than the banner lists: it says how many more
    fields = {f.attname: getattr(ours, f.attname) for f in Deployment._meta.concrete_fields if f.name != "id"}
    Deployment.objects.bulk_create([  # the database holds one active deployment per endpoint
        Deployment(**{**fields, "endpoint_id": endpoint_create(
            actor=Actor.system(), team=ours.team, model=ours.model, name=f"e{i}", kind="label", label="stable").pk})
        for i in range(6)])
    shown = banner(client.get("/fleet/").content.decode())
    assert len(re.findall(r'<li><a href="/deployments/\d+/">', shown)) == 5
    assert "And 3 more" in shown


def test_banner_costs_one_query_and_none_for_anonymous_people(client, signed_in, label_endpoint, as_deployer):
    drive(create(as_deployer), State.ROLLBACK_FAILED)
    with CaptureQueriesContext(connection) as seen:
        html = signed_in.get("/endpoints/").content.decode()
    assert banner(html) is not None
    assert len([q for q in seen.captured_queries if '"deployments_deployment"' in q["sql"]]) == 1
    with CaptureQueriesContext(connection) as seen:  # the live partial does not show the banner: no query for it
        signed_in.get(live(Deployment.objects.get()))
    assert len([q for q in seen.captured_queries if "rollback_failed" in q["sql"]]) == 0
    signed_in.logout()
    with CaptureQueriesContext(connection) as seen:
        response = client.get("/login/")
    assert response.status_code == 200 and banner(response.content.decode()) is None
    assert not [q for q in seen.captured_queries if '"deployments_deployment"' in q["sql"]]


# -- query counts -------------------------------------------------------------------------------------


def queries_for(client, path: str) -> int:
    with CaptureQueriesContext(connection) as seen:
        response = client.get(path)
    assert response.status_code == 200
    return len(seen.captured_queries)


def grow(d: Deployment, n: int) -> None:
    """n more history rows and gate evaluations, and green on three servers."""
    now = timezone.now()
    DeploymentTransition.objects.bulk_create([
        DeploymentTransition(deployment=d, from_state="analyzing", to_state="paused", event="no_data", actor_name="worker",
                             source="worker", reason=f"pause {i}", detail={"traffic_percent": 10}, at=now)
        for i in range(n)])
    GateEvaluation.objects.bulk_create(
        [evaluation(d, gate, 0.01, "pass", at=now) for i in range(n) for gate in ("error_ratio", "p99_ms", "guard")])


def test_query_counts_stay_the_same_as_history_and_evaluations_grow(signed_in, label_endpoint, as_deployer, model,
                                                                   servers):
    d = drive(create(as_deployer, gates={"max_error_ratio": 0.05, "max_p99_ms": 250}), State.ANALYZING)
    green = place_ready(model, [1, 2], servers[1:2])
    Deployment.objects.filter(pk=d.pk).update(green_placement=green)
    signed_in.get(page(d))  # warm: the session, content types
    small = {"page": queries_for(signed_in, page(d)), "live": queries_for(signed_in, live(d))}
    grow(d, 200)
    PlacementTarget.objects.create(placement=green, model=model, server=servers[2], server_name=servers[2].name,
                                   state=TargetState.READY, state_changed_at=timezone.now())
    large = {"page": queries_for(signed_in, page(d)), "live": queries_for(signed_in, live(d))}
    assert large == small
    assert small["live"] <= 10 and small["page"] <= 11, small
    html = signed_in.get(live(d)).content.decode()
    hidden = DeploymentTransition.objects.filter(deployment=d).count() - PAGE_TRANSITIONS
    assert f"{hidden} older transitions not shown" in html
    assert len(re.findall(r"data-transition=", html)) == PAGE_TRANSITIONS
    assert len(re.findall(r"<tr data-verdict=", html)) == PAGE_EVALUATIONS
    assert f"600 in all; the latest {PAGE_EVALUATIONS} shown, {600 - PAGE_EVALUATIONS} older hidden" in html
    assert len(re.findall(r'<tr data-server="cpu-\d"', html)) == 2
