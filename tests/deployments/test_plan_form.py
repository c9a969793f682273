"""The plan form with Django's test client: Preview shows the plan (timeline, duration, GPUs against
the quota) and writes nothing; Start creates (or schedules) through the same service as the API
and lands on the deployment's page; every refusal of the service comes back next to the input it
names, with the API's status (400, 403, 409) and nothing written; the Deployments page lists the
scheduled ones and keeps a fixed query count."""
from datetime import timedelta
from html import unescape
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.deployments.forms import DeploymentPlanForm
from controlplane.deployments.machine import State
from controlplane.deployments.models import Deployment
from controlplane.deployments.views.listing import clock, duration_words
from controlplane.endpoints.services import endpoint_create
from controlplane.quotas.services import quota_set
from tests.deployments.conftest import counts, create
from tests.deployments.test_services import gpu_blue, gpu_servers  # noqa: F401 - fixtures

PREVIEW = "/deployments/plan/preview/"
START = "/deployments/plan/"
HX = {"HTTP_HX_REQUEST": "true"}


VOID = frozenset({"input", "br", "img", "meta", "link", "hr"})


class _Fields(HTMLParser):
    """Collects, for each element with data-field (or each custom gate row cell), the texts of
    the .field-error elements inside it."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, field name or None)
        self.errors: dict[str, list[str]] = {}
        self.in_error: str | None = None
        self.refused = ""
        self.in_refused = False

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        a = dict(attrs)
        name = a.get("data-field")
        self.stack.append((tag, name))
        if "field-error" in (a.get("class") or "").split():
            owners = [n for _, n in self.stack if n]
            self.in_error = owners[-1] if owners else "?"
            self.errors.setdefault(self.in_error, []).append("")
        if "plan-refused" in (a.get("class") or "").split():
            self.in_refused = True

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break
        if tag == "small":
            self.in_error = None
        if tag == "p":
            self.in_refused = False

    def handle_data(self, data):
        if self.in_error is not None:
            self.errors[self.in_error][-1] += data
        if self.in_refused:
            self.refused += data


def errors_by_field(response) -> dict[str, str]:
    parser = _Fields()
    parser.feed(response.content.decode())
    return {k: " ".join(unescape(" ".join(v.split())) for v in vs) for k, vs in parser.errors.items()}


def form(endpoint="vision.scorer", **extra) -> dict:
    """The browser's post of a small canary to v2, as the form's inputs send it."""
    data = {"endpoint": endpoint, "green": "2", "strategy": "canary", "canary_percent": "10", "bake_s": "30",
            "step_percent": "25", "steps": "", "placement": "same_servers", "servers": "",
            "max_error_ratio": "0.05", "max_p99_ms": "", "max_p99_ratio": "", "min_requests": "50",
            "interval_s": "10", "window_s": "60", "failures_to_breach": "2", "guard": "on",
            "deadline_s": "", "rollback_window_s": "600", "start_at": "", "reason": "ship v2"}
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def signed_in(client):
    def sign_in(user):
        client.force_login(user)
        return client
    return sign_in


# -- the form's conversion (no service) --------------------------------------------------------------


def body_of(**extra) -> dict:
    f = DeploymentPlanForm(form(**extra), endpoints=["vision.scorer"])
    assert f.is_valid(), f.errors
    return f.body()


def test_the_form_sends_the_apis_body_shape(db):
    data = body_of(strategy="steps", steps="10:60, 50 : 120;100", placement="new_servers", servers="cpu-2, cpu-3 cpu-4",
                   max_p99_ms="250.5", approval_required="on", deadline_s="3600",
                   start_at="2030-01-02T03:04", **{"custom-1-name": "p95", "custom-1-query": "up{endpoint={{endpoint}}}", "custom-1-max": "1e3"})
    assert data == {
        "endpoint": "vision.scorer", "version": 2, "strategy": "steps", "placement": "new_servers",
        "steps": [{"percent": 10, "bake_s": 60}, {"percent": 50, "bake_s": 120}, {"percent": 100}],
        "servers": ["cpu-2", "cpu-3", "cpu-4"],
        "gates": {"max_error_ratio": 0.05, "guard": True, "max_p99_ms": 250.5, "min_requests": 50, "interval_s": 10,
                  "window_s": 60, "failures_to_breach": 2, "custom": [{"name": "p95", "query": "up{endpoint={{endpoint}}}", "max": 1000.0}]},
        "approval_required": True, "deadline_s": 3600, "rollback_window_s": 600,
        "start_at": "2030-01-02T03:04:00+00:00", "reason": "ship v2",
    }


def test_the_form_leaves_out_what_the_strategy_does_not_use_and_blank_inputs(db):
    data = body_of(green="v3", strategy="linear", canary_percent="50", steps="10:5", servers="cpu-9", min_requests="",
                   rollback_window_s="", guard=None, max_error_ratio="")
    assert data["version"] == 3 and "label" not in data
    assert (data.get("step_percent"), data.get("bake_s")) == (25, 30)
    assert not {"canary_percent", "steps", "servers", "rollback_window_s"} & set(data)
    assert data["gates"] == {"max_error_ratio": None, "guard": False, "interval_s": 10, "window_s": 60,
                             "failures_to_breach": 2}  # a blank error ratio turns that gate off
    assert body_of(green="canary")["label"] == "canary"
    # Not a number: sent as it is, for the service to refuse in its own words.
    assert body_of(bake_s="soon")["bake_s"] == "soon"


def test_words_for_durations():
    assert [duration_words(s) for s in (0, 1, 59, 60, 61, 3600, 3725, 90000)] == [
        "no time", "1 second", "59 seconds", "1 minute", "1 minute 1 second", "1 hour", "1 hour 2 minutes",
        "1 day 1 hour"]
    assert [clock(s) for s in (0, 72, 3725)] == ["+0:00", "+1:12", "+1:02:05"]


# -- preview -------------------------------------------------------------------------------------------


def test_preview_shows_the_timeline_duration_and_quota_and_writes_nothing(signed_in, deployer, label_endpoint):
    before = counts()
    response = signed_in(deployer).post(PREVIEW, form(strategy="linear", step_percent="25", bake_s="30"), **HX)
    assert response.status_code == 200
    page = response.content.decode()
    assert page.lstrip().startswith('<section class="card plan" id="plan"')  # the form's section, for htmx
    phases = [(p["name"], p["traffic"], p["at"]) for p in response.context["preview"]["phases"]]
    assert phases == [("provisioning", 0, "+0:00"), ("step 1", 25, "+0:02"), ("step 2", 50, "+0:42"),
                      ("step 3", 75, "+1:22"), ("promoting", 100, "+2:02"), ("rollback window", 100, "+2:03"),
                      ("retired", 100, "+12:03")]
    for name, traffic, _ in phases:
        assert f'<tr data-phase="{name}"' in page
    assert page.count('data-traffic>25%<') == 1 and page.count('data-traffic>75%<') == 1
    assert "<strong data-projected>2 minutes 3 seconds</strong>" in page
    assert "blue then stays loaded 10 minutes for a fast rollback" in page
    assert "vision.scorer</code>: v1 → v2, linear" in page
    assert 'role="meter" aria-labelledby="plan-quota-title"' in page and "no GPU quota set" in page
    assert "Start deployment" in page and "Schedule deployment" not in page
    assert counts() == before


def test_preview_of_a_new_servers_surge_draws_the_quota_bar_with_the_surge(signed_in, deployer, gpu_blue):  # noqa: F811
    before = counts()
    response = signed_in(deployer).post(PREVIEW, form(endpoint="vision.gpu", placement="new_servers", servers="gpu-2"), **HX)
    assert response.status_code == 200, errors_by_field(response)
    p = response.context["preview"]
    assert (p["quota"], p["held_now"], p["surge"], p["peak"], p["released"], p["over_quota"]) == (4, 2, 2, 4, 2, False)
    page = response.content.decode()
    assert 'class="quota-seg quota-c0" data-width="50.000"' in page  # 2 of 4 held now
    assert 'class="quota-seg quota-c2 quota-surge" data-width="50.000"' in page  # and 2 more
    assert "at most 4 of 4 GPUs held" in page and "2 more while blue is loaded" in page
    assert "data-over-quota" not in page
    assert counts() == before


def test_preview_over_the_quota_says_by_how_much(signed_in, deployer, as_admin, team, gpu_blue):  # noqa: F811
    quota_set(actor=as_admin, team=team, gpus=3)
    response = signed_in(deployer).post(PREVIEW, form(endpoint="vision.gpu", placement="new_servers", servers="gpu-2"), **HX)
    assert response.status_code == 200
    page = response.content.decode()
    assert "1 over quota" in page and "quota-over" in page and 'class="quota-limit" data-left="75.000"' in page
    assert "The team's quota is 3 GPUs; 2 are held and green needs 2 more, 1 too many." in page


# -- refusals next to their fields ---------------------------------------------------------------------


BAD = [
    ({"canary_percent": "150"}, "canary_percent", "Give a whole number from 1 to 99."),
    ({"bake_s": "soon"}, "bake_s", "Give a whole number from 0 to 604800."),
    ({"green": ""}, "green", "Give either version (a number) or label (a name) for green, not both."),
    ({"green": "9"}, "green", "fraud-scorer has no version 9."),
    ({"green": "4"}, "green", "fraud-scorer v4 is still registering."),
    ({"green": "nolabel"}, "green", "fraud-scorer has no label 'nolabel'."),
    ({"strategy": "steps", "steps": "10:60, 5:30"}, "steps", "Step 2 (5:30): Steps must grow: 5 is not above 10."),
    ({"strategy": "steps", "steps": "10:60, 150"}, "steps", "Step 2 (150): Give a whole number from 1 to 100."),
    ({"strategy": "steps", "steps": "10 then 20"}, "steps", "Write each step as percent:bake seconds"),
    ({"strategy": "steps", "steps": ""}, "steps", "Give a list of steps"),
    ({"strategy": "linear", "step_percent": "2"}, "step_percent", "At most 20 steps: use a step of at least 5%."),
    ({"placement": "new_servers", "servers": ""}, "servers", "new_servers needs the servers green goes on."),
    ({"placement": "new_servers", "servers": "nowhere"}, "servers", "No server named nowhere."),
    ({"placement": "new_servers", "servers": "cpu-1"}, "servers", "fraud-scorer is already placed on cpu-1"),
    ({"max_p99_ms": "0"}, "max_p99_ms", "Give a number above 0 to 3.6e+06."),
    ({"max_p99_ratio": "0.5"}, "max_p99_ratio", "Give a number from 1 to 1000."),
    ({"max_error_ratio": "2"}, "max_error_ratio", "Give a number from 0 to 1."),
    ({"window_s": "1"}, "window_s", "Give a whole number from 5 to 604800."),
    ({"max_error_ratio": ""}, "gates", "Give at least one gate"),
    ({"custom-0-name": "p95", "custom-0-query": " "}, "custom-0-query", "Give a PromQL expression"),
    ({"custom-2-name": "bad name!", "custom-2-query": "up{endpoint={{endpoint}}}", "custom-2-max": "1"}, "custom-2-name", "Give a short name"),
    ({"custom-0-name": "a", "custom-0-query": "up{endpoint={{endpoint}}}", "custom-0-max": "1",
      "custom-1-name": "a", "custom-1-query": "up{endpoint={{endpoint}}}", "custom-1-max": "2"}, "custom", "Two custom gates have the same name."),
    ({"deadline_s": "5"}, "deadline_s", "Give a whole number from 60 to 2592000."),
    ({"rollback_window_s": "-1"}, "rollback_window_s", "Give a whole number from 0 to 2592000."),
    ({"start_at": "2001-01-01T00:00"}, "start_at", "The start time has passed; leave it out to start now."),
    ({"start_at": "tomorrow"}, "start_at", "Give a date and time, such as 2026-12-01T18:00."),
    ({"reason": "x" * 2001}, "reason", "Give a text of at most 2000 characters."),
    ({"endpoint": "vision.nope"}, "endpoint", "No endpoint named 'vision.nope' in your teams."),
]


@pytest.mark.parametrize("url", [PREVIEW, START])
@pytest.mark.parametrize(("extra", "field", "message"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_a_bad_input_comes_back_next_to_its_field_with_400_and_nothing_written(
        signed_in, deployer, label_endpoint, servers, url, extra, field, message):
    before = counts()
    response = signed_in(deployer).post(url, form(**extra), **HX)
    assert response.status_code == 400
    shown = errors_by_field(response)
    assert message in shown.get(field, ""), shown
    assert counts() == before
    assert 'data-refused="400"' in response.content.decode()


def test_without_htmx_a_refusal_renders_the_whole_page_with_the_error_by_its_field(signed_in, deployer, label_endpoint):
    response = signed_in(deployer).post(START, form(canary_percent="0"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "<h1>Deployments</h1>" in page and 'id="scheduled"' in page
    assert errors_by_field(response)["canary_percent"] == "Give a whole number from 1 to 99."
    assert not Deployment.objects.exists()


def test_the_form_keeps_what_was_typed_after_a_refusal(signed_in, deployer, label_endpoint):
    response = signed_in(deployer).post(PREVIEW, form(strategy="steps", steps="10:60, 5:30", reason="keep <me>"), **HX)
    page = response.content.decode()
    assert 'value="10:60, 5:30"' in page and "keep &lt;me&gt;</textarea>" in page
    assert '<option value="steps" selected>' in page
    # the inputs of other strategies stay hidden; the steps are shown
    assert '<div class="plan-wide" data-show-for="steps">' in page and '<div data-show-for="canary" hidden>' in page


def test_another_deployment_on_the_endpoint_is_a_409_naming_it(signed_in, deployer, as_deployer, label_endpoint):
    first = create(as_deployer)
    before = counts()
    response = signed_in(deployer).post(START, form(green="3"), **HX)
    assert response.status_code == 409
    assert errors_by_field(response)["endpoint"] == (
        f"The endpoint already has an active deployment: deployment {first.pk} (pending). Wait for it, or roll it back.")
    assert 'data-refused="409"' in response.content.decode()
    assert counts() == before


def test_over_the_quota_start_is_a_409_with_the_numbers_and_the_plan(signed_in, deployer, as_admin, team, gpu_blue):  # noqa: F811
    quota_set(actor=as_admin, team=team, gpus=3)
    before = counts()
    response = signed_in(deployer).post(START, form(endpoint="vision.gpu", placement="new_servers", servers="gpu-2"), **HX)
    assert response.status_code == 409
    assert errors_by_field(response)["placement"] == (
        "team vision would hold 4 of 3 GPUs: deployment of fraud-scorer v2 on new servers (the surge) needs 2 new on top of 2 held")
    assert "1 over quota" in response.content.decode()  # the plan that does not fit, drawn
    assert counts() == before


def test_another_teams_endpoint_is_refused_like_a_missing_one(signed_in, deployer, label_endpoint, foreign):
    client = signed_in(deployer)
    theirs = client.post(PREVIEW, form(endpoint="speech.asr"), **HX)
    missing = client.post(PREVIEW, form(endpoint="speech.nope"), **HX)
    assert theirs.status_code == missing.status_code == 400
    assert errors_by_field(theirs)["endpoint"] == "No endpoint named 'speech.asr' in your teams."
    assert errors_by_field(missing)["endpoint"] == "No endpoint named 'speech.nope' in your teams."
    assert "speech.asr" not in client.get("/deployments/?part=plan", **HX).content.decode()  # not offered either
    assert not Deployment.objects.exists()


# -- start and schedule --------------------------------------------------------------------------------


def test_start_creates_it_redirects_to_its_page_and_audits_it(signed_in, deployer, label_endpoint):
    client = signed_in(deployer)
    response = client.post(START, form(reason="ship v2 to 10%"))
    d = Deployment.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/deployments/{d.pk}/"
    assert (d.state, d.green_version.version, d.steps, d.reason) == (State.PENDING, 2, [{"percent": 10, "bake_s": 30}], "ship v2 to 10%")
    [event] = AuditEvent.objects.filter(action="deployment.create")
    assert (event.actor_name, event.source, event.reason, event.object_id) == ("dana", "ui", "ship v2 to 10%", str(d.pk))
    page = client.get(response["Location"]).content.decode()
    assert f"Deployment {d.pk} started: vision.scorer v1 → v2." in page


def test_start_through_htmx_answers_with_a_redirect_header(signed_in, deployer, label_endpoint):
    response = signed_in(deployer).post(START, form(), **HX)
    d = Deployment.objects.get()
    assert response.status_code == 200 and response["HX-Redirect"] == f"/deployments/{d.pk}/"


def test_a_start_time_schedules_it_and_the_deployments_page_lists_it(signed_in, deployer, label_endpoint):
    when = (timezone.now() + timedelta(hours=2, minutes=5)).replace(second=0, microsecond=0)
    client = signed_in(deployer)
    preview = client.post(PREVIEW, form(start_at=when.strftime("%Y-%m-%dT%H:%M")), **HX)
    assert "Schedule deployment" in preview.content.decode() and "in 2\xa0hours" in preview.content.decode()
    response = client.post(START, form(start_at=when.strftime("%Y-%m-%dT%H:%M")))
    d = Deployment.objects.get()
    assert (d.state, d.start_at) == (State.SCHEDULED, when)
    assert f"Deployment {d.pk} scheduled: vision.scorer v1 → v2, starting {when:%Y-%m-%d %H:%M} UTC." in \
        client.get(response["Location"]).content.decode()
    page = client.get("/deployments/").content.decode()
    row = page[page.index(f'<tr data-scheduled="{d.pk}">'):]
    row = row[:row.index("</tr>")]
    assert when.strftime("%Y-%m-%d %H:%M") in row and "in 2\xa0hours" in row
    assert f'data-open-dialog="cancel-{d.pk}">Cancel</button>' in row
    assert f'action="/deployments/{d.pk}/act/cancel/"' in row and 'name="reason"' in row
    assert ">Keep it<" in row and ">Confirm<" in row


def test_the_endpoint_page_has_the_form_with_the_endpoint_fixed(signed_in, deployer, viewer, label_endpoint):
    page = signed_in(deployer).get(f"/endpoints/{label_endpoint.pk}/").content.decode()
    assert "Deploy a new version to <code>vision.scorer</code>" in page
    assert '<input type="hidden" name="endpoint" value="vision.scorer"' in page and 'name="fixed" value="1"' in page
    response = signed_in(deployer).post(PREVIEW, form(fixed="1", canary_percent="0"), **HX)
    assert response.status_code == 400
    again = response.content.decode()
    assert "Deploy a new version to <code>vision.scorer</code>" in again and '<select name="endpoint"' not in again
    assert "Preview plan" not in signed_in(viewer).get(f"/endpoints/{label_endpoint.pk}/").content.decode()


# -- who may -------------------------------------------------------------------------------------------


def test_the_deployments_page_loads_the_form_apart_and_opens_it_in_the_page_without_script(
        signed_in, deployer, label_endpoint):
    client = signed_in(deployer)
    page = client.get("/deployments/").content.decode()
    assert 'hx-get="/deployments/?part=plan" hx-trigger="load" hx-swap="outerHTML"' in page
    assert '<a href="?plan=open#plan">Open it in the page</a>' in page and 'href="#plan">Plan a deployment</a>' in page
    assert "Preview plan" not in page and 'name="green"' not in page  # not rendered here
    part = client.get("/deployments/?part=plan", **HX).content.decode()
    assert part.lstrip().startswith('<section class="card plan" id="plan"')
    assert "Preview plan" in part and '<option value="vision.scorer">vision.scorer</option>' in part
    assert "<html" not in part
    inline = client.get("/deployments/?plan=open").content.decode()
    assert "Preview plan" in inline and "?part=plan" not in inline and "<html" in inline


def test_a_viewer_sees_no_form_and_is_refused_403(signed_in, viewer, label_endpoint):
    client = signed_in(viewer)
    page = client.get("/deployments/").content.decode()
    assert "Preview plan" not in page and "Plan a deployment" not in page and 'id="scheduled"' in page
    assert "?part=plan" not in page and "Preview plan" not in client.get("/deployments/?plan=open").content.decode()
    assert client.get("/deployments/?part=plan", **HX).status_code == 403
    for url in (PREVIEW, START):
        assert client.post(url, form(), **HX).status_code == 403
    assert not Deployment.objects.exists() and not AuditEvent.objects.filter(action="deployment.create").exists()


def test_a_viewer_here_and_deployer_elsewhere_is_refused_by_the_service_with_403(signed_in, viewer, team, other_team, label_endpoint):
    from controlplane.accounts.models import Membership, Role

    Membership.objects.create(user=viewer, team=other_team, role=Role.DEPLOYER)
    response = signed_in(viewer).post(START, form(), **HX)
    assert response.status_code == 403
    assert "This needs the deployer role in team vision; you are viewer." in response.content.decode()
    assert not Deployment.objects.exists()


def test_signed_out_posts_go_to_the_login(client, label_endpoint):
    response = client.post(START, form())
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# -- the Deployments page's cost -----------------------------------------------------------------------


def _fill(template: Deployment, n: int):
    """n more deployments over n new endpoints: every third scheduled, the others retired at step 1."""
    rows = []
    for i in range(n):
        ep = endpoint_create(actor=Actor.system(), team=template.team, model=template.model, name=f"e{n}-{i}",
                             kind="label", label="stable")
        scheduled = i % 3 == 0
        rows.append(Deployment(
            team=template.team, endpoint=ep, model=template.model, blue_version=template.blue_version,
            green_version=template.green_version, strategy="linear", steps=[{"percent": 50, "bake_s": 1}],
            placement_mode="same_servers", gates=template.gates, state=State.SCHEDULED if scheduled else State.RETIRED,
            state_changed_at=timezone.now(), step_index=-1 if scheduled else 0, traffic_percent=0 if scheduled else 50,
            start_at=timezone.now() + timedelta(hours=1) if scheduled else None, created_by=template.created_by))
    Deployment.objects.bulk_create(rows)


def test_the_deployments_page_costs_the_same_queries_for_3_or_21_deployments(signed_in, deployer, as_deployer, label_endpoint):
    template = create(as_deployer)
    client = signed_in(deployer)
    client.get("/deployments/")  # the session's first read
    _fill(template, 3)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/deployments/").status_code == 200
    _fill(template, 18)  # 22 rows in all: still one page
    with CaptureQueriesContext(connection) as many:
        page = client.get("/deployments/").content.decode()
    assert len(many) == len(few), [q["sql"] for q in many]
    assert len(many) <= 12, [q["sql"] for q in many]
    assert page.count('<tr data-deployment="') == 22
    assert page.count('<tr data-scheduled="') == page.count('data-open-dialog="cancel-') == 1 + 6
    assert page.count("step 1 of 1, <span data-traffic>50%</span> to green") == 2 + 12  # step and share per row
    assert page.count('aria-valuenow="100"><span data-width="100"></span>') == 14  # retired: all done


def test_the_deployments_page_pages_twenty_five_at_a_time(signed_in, deployer, as_deployer, label_endpoint):
    _fill(create(as_deployer), 60)
    client = signed_in(deployer)
    first = client.get("/deployments/").content.decode()
    assert first.count('<tr data-deployment="') == 25 and "Page 1 of 3" in first
    assert first.count('<tr data-scheduled="') == 20  # the scheduled list is not paged with it
    third = client.get("/deployments/?page=3").content.decode()
    assert third.count('<tr data-deployment="') == 11 and "Page 3 of 3" in third
