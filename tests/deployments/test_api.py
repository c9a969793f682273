"""/api/v1/deployments/: create, plan, strict input, one active deployment per endpoint, the
people's actions and team isolation. Each test asserts the status code, then refresh_from_db,
then the side effects (history rows, audit events, labels, variants)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.deployments import machine, services
from controlplane.deployments.machine import Event, State
from controlplane.deployments.models import Deployment
from controlplane.endpoints.services import VariantSpec, endpoint_create
from controlplane.registry.models import VersionLabel
from tests.deployments.conftest import (
    URL,
    body,
    counts,
    create,
    drive,
    events,
    place_ready,
    step,
    url,
)


def fields(response) -> dict:
    return response.json().get("fields", {})


def message(response, field: str) -> str:
    return " ".join(fields(response)[field])


def label_of(model, name="stable") -> int:
    return VersionLabel.objects.select_related("version").get(model=model, name=name).version.version


def variants_of(endpoint) -> list[tuple[str, int, int]]:
    return [(v.name, v.version.version, v.weight) for v in endpoint.variants.select_related("version").order_by("position")]


def soon(minutes=30) -> str:
    return (timezone.now() + timedelta(minutes=minutes)).isoformat()


# -- create ---------------------------------------------------------------------------------------


def test_a_deploy_token_creates_a_deployment_with_its_history_and_audit_event(tokens, deployer, label_endpoint, servers):
    client = tokens(deployer, ["deploy"])
    before = counts()
    response = client.post(URL, body(gates={"max_error_ratio": 0.02}, deadline_s=3600), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    d = Deployment.objects.get(pk=data["id"])
    d.refresh_from_db()
    assert (d.team.slug, d.endpoint_id, d.state, d.cause) == ("vision", label_endpoint.pk, State.PENDING, "")
    assert (d.blue_version.version, d.green_version.version, d.target_label) == (1, 2, "")
    assert (d.strategy, d.steps, d.placement_mode) == ("canary", [{"percent": 10, "bake_s": 30}], "same_servers")
    assert d.servers == [{"id": servers[0].pk, "name": "cpu-1"}]  # same servers: where blue is READY
    assert d.plan["green_versions"] == [1, 2] and d.plan["surge"] == 0
    assert d.gates["max_error_ratio"] == 0.02 and d.created_by == deployer and d.reason == "ship v2"
    assert d.deadline_at is not None and abs((d.deadline_at - d.created_at).total_seconds() - 3600) < 5
    assert d.traffic_percent == 0 and d.step_index == -1
    assert (data["state"], data["blue_version"], data["green_version"], data["endpoint"]) == ("pending", 1, 2, "vision.scorer")
    assert data["actions"] == ["rollback", "abort"]
    assert [(h["from_state"], h["to_state"], h["event"], h["actor"], h["source"], h["reason"]) for h in data["history"]] == [
        ("", "pending", "create", "dana", "api", "ship v2")]
    [row] = d.transitions.all()
    assert (row.from_state, row.to_state, row.event) == ("", "pending", "create")
    [event] = events("deployment.create")
    assert (event.object_id, event.team_id, event.actor_user_id, event.source, event.reason) == (
        str(d.pk), d.team_id, deployer.pk, "api", "ship v2")
    assert event.token_id is not None
    assert event.after["green_version"] == 2 and event.after["blue_version"] == 1 and event.after["state"] == "pending"
    after = counts()
    assert (after["deployments"], after["transitions"], after["audit"]) == (
        before["deployments"] + 1, before["transitions"] + 1, before["audit"] + 1)
    assert after["reservations"] == before["reservations"] and after["placements"] == before["placements"]


@pytest.mark.parametrize("which", ["label_endpoint", "pinned_endpoint"])
@pytest.mark.parametrize("green", [{"version": 2}, {"label": "canary"}])
def test_label_bound_and_pinned_endpoints_take_green_by_version_or_label(request, api, deployer, labels, which, green):
    endpoint = request.getfixturevalue(which)
    response = api(deployer).post(URL, body(endpoint=endpoint.public_name, **green), format="json")
    assert response.status_code == 201, response.json()
    d = Deployment.objects.get(pk=response.json()["id"])
    d.refresh_from_db()
    assert (d.endpoint_id, d.blue_version.version, d.green_version.version) == (endpoint.pk, 1, 2)
    assert d.target_label == green.get("label", "")
    expected_variants = [] if which == "label_endpoint" else [{"name": "a", "version": 1, "weight": 100}]
    assert d.plan["blue_variants"] == expected_variants


def test_blue_is_the_version_the_label_points_at(api, deployer, model, label_endpoint, servers):
    place_ready(model, [2], servers[1:2])
    VersionLabel.objects.filter(model=model, name="stable").update(version=model.versions.get(version=2))
    response = api(deployer).post(URL, body(version=3), format="json")
    assert response.status_code == 201, response.json()
    d = Deployment.objects.get(pk=response.json()["id"])
    assert (d.blue_version.version, d.green_version.version) == (2, 3)
    assert d.servers == [{"id": servers[1].pk, "name": "cpu-2"}]  # same servers: where blue is READY


def test_blue_of_a_pinned_endpoint_is_its_one_variant_with_traffic(api, deployer, team, model, versions, blue):
    endpoint_create(actor=Actor.system(), team=team, model=model, name="mostly", kind="pinned",
                    variants=[VariantSpec("a", 1, 100), VariantSpec("idle", 3, 0)])
    response = api(deployer).post(URL, body(endpoint="vision.mostly"), format="json")
    assert response.status_code == 201, response.json()
    d = Deployment.objects.get(pk=response.json()["id"])
    assert (d.blue_version.version, d.green_version.version) == (1, 2)


def test_a_pinned_endpoint_that_splits_traffic_is_refused(api, deployer, team, model, versions, blue, servers):
    place_ready(model, [2], servers[1:2])
    endpoint_create(actor=Actor.system(), team=team, model=model, name="split", kind="pinned",
                    variants=[VariantSpec("a", 1, 90), VariantSpec("b", 2, 10)])
    before = counts()
    response = api(deployer).post(URL, body(endpoint="vision.split", version=3), format="json")
    assert response.status_code == 400, response.json()
    assert "2 variants" in message(response, "endpoint")
    assert counts() == before


@pytest.mark.parametrize("green, field, text", [
    ({"version": 1}, "version", "already serves v1"),
    ({"label": "stable"}, "label", "already serves v1"),
    ({"version": 4}, "version", "v4 is still registering"),
    ({"version": 9}, "version", "no version 9"),
    ({"label": "nightly"}, "label", "no label 'nightly'"),
])
def test_a_green_that_cannot_be_deployed_is_a_400(api, deployer, label_endpoint, green, field, text):
    before = counts()
    response = api(deployer).post(URL, body(**green), format="json")
    assert response.status_code == 400, response.json()
    assert text in message(response, field), response.json()
    assert counts() == before


def test_blue_ready_nowhere_is_a_400(api, deployer, label_endpoint, blue):
    blue.targets.update(state="loading")
    response = api(deployer).post(URL, body(), format="json")
    assert response.status_code == 400
    assert "READY on no server" in message(response, "endpoint")
    assert not Deployment.objects.exists()


@pytest.mark.parametrize("path", [URL, URL + "plan/"])
def test_another_teams_endpoint_reads_exactly_like_a_missing_one(request, api, deployer, label_endpoint, other_team, path):
    client = api(deployer)
    missing = client.post(path, body(endpoint="speech.asr"), format="json")
    request.getfixturevalue("foreign")  # now speech.asr exists, in a team dana is not in
    before = counts()
    hidden = client.post(path, body(endpoint="speech.asr"), format="json")
    assert missing.status_code == hidden.status_code
    assert missing.status_code in (400, 404), missing.json()
    assert missing.json() == hidden.json()
    assert counts() == before and not Deployment.objects.filter(team=other_team).exists()


def test_viewers_and_read_tokens_may_not_create(api, tokens, viewer, deployer, label_endpoint):
    refused = [api(viewer), tokens(deployer, ["read"]), tokens(deployer, ["infer"])]
    before = counts()
    for client in refused:
        assert client.post(URL, body(), format="json").status_code == 403
    assert api().post(URL, body(), format="json").status_code in (401, 403)
    assert counts() == before


def test_the_create_and_its_audit_event_are_one_transaction(as_deployer, label_endpoint, monkeypatch):
    from controlplane.deployments.services import commands

    def broken(**kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(commands, "audit_record", broken)
    before = counts()
    with pytest.raises(RuntimeError):
        create(as_deployer)
    assert counts() == before


# -- bad input ------------------------------------------------------------------------------------

BAD = [
    ({"endpoint": 5}, "endpoint"),
    ({"endpoint": ""}, "endpoint"),
    ({"endpoint": None}, "endpoint"),
    ({"endpoint": ["vision.scorer"]}, "endpoint"),
    ({"endpoint": "x" * 200}, "endpoint"),
    ({"version": "2"}, "version"),
    ({"version": 2.0}, "version"),
    ({"version": True}, "version"),
    ({"version": 0}, "version"),
    ({"version": [2]}, "version"),
    ({"version": None}, "version"),  # neither version nor label
    ({"label": "canary"}, "version"),  # both
    ({"version": None, "label": 5}, "label"),
    ({"version": None, "label": ""}, "label"),
    ({"version": None, "label": "x" * 40}, "label"),
    ({"strategy": "big-bang"}, "strategy"),
    ({"strategy": 1}, "strategy"),
    ({"strategy": ["canary"]}, "strategy"),
    ({"strategy": None}, "strategy"),
    ({"canary_percent": "10"}, "canary_percent"),
    ({"canary_percent": 100}, "canary_percent"),
    ({"canary_percent": 10.5}, "canary_percent"),
    ({"canary_percent": True}, "canary_percent"),
    ({"step_percent": 0}, "step_percent"),
    ({"strategy": "linear", "step_percent": 2}, "step_percent"),  # 49 steps
    ({"bake_s": -1}, "bake_s"),
    ({"bake_s": "60"}, "bake_s"),
    ({"bake_s": 1e9}, "bake_s"),
    ({"steps": [{"percent": 10}]}, "steps"),  # steps without strategy "steps"
    ({"strategy": "steps"}, "steps"),
    ({"strategy": "steps", "steps": "10,50"}, "steps"),
    ({"strategy": "steps", "steps": []}, "steps"),
    ({"strategy": "steps", "steps": [{"percent": p} for p in range(1, 23)]}, "steps"),
    ({"strategy": "steps", "steps": [5]}, "steps[0]"),
    ({"strategy": "steps", "steps": [{"percent": 10, "bake": 5}]}, "steps[0]"),
    ({"strategy": "steps", "steps": [{"percent": "10"}]}, "steps[0].percent"),
    ({"strategy": "steps", "steps": [{"bake_s": 10}]}, "steps[0].percent"),
    ({"strategy": "steps", "steps": [{"percent": 101}]}, "steps[0].percent"),
    ({"strategy": "steps", "steps": [{"percent": 50}, {"percent": 10}]}, "steps[1].percent"),
    ({"strategy": "steps", "steps": [{"percent": 10, "bake_s": -5}]}, "steps[0].bake_s"),
    ({"placement": "elsewhere"}, "placement"),
    ({"placement": 1}, "placement"),
    ({"placement": "new_servers"}, "servers"),  # no servers named
    ({"placement": "new_servers", "servers": "cpu-2"}, "servers"),
    ({"placement": "new_servers", "servers": [2]}, "servers"),
    ({"placement": "new_servers", "servers": [""]}, "servers"),
    ({"placement": "new_servers", "servers": ["cpu-2", "cpu-2"]}, "servers"),
    ({"servers": ["cpu-2"]}, "servers"),  # same_servers takes blue's
    ({"gates": []}, "gates"),
    ({"gates": "strict"}, "gates"),
    ({"gates": {"max_error_ratio": None}}, "gates"),  # no gate left
    ({"gates": {"strict": True}}, "gates.strict"),
    ({"gates": {"max_error_ratio": "0.1"}}, "gates.max_error_ratio"),
    ({"gates": {"max_error_ratio": 2}}, "gates.max_error_ratio"),
    ({"gates": {"max_error_ratio": True}}, "gates.max_error_ratio"),
    ({"gates": {"max_p99_ms": 0}}, "gates.max_p99_ms"),
    ({"gates": {"max_p99_ms": "200"}}, "gates.max_p99_ms"),
    ({"gates": {"max_p99_ratio": 0.5}}, "gates.max_p99_ratio"),
    ({"gates": {"min_requests": 0}}, "gates.min_requests"),
    ({"gates": {"min_requests": 1.5}}, "gates.min_requests"),
    ({"gates": {"interval_s": "10"}}, "gates.interval_s"),
    ({"gates": {"window_s": 1}}, "gates.window_s"),
    ({"gates": {"failures_to_breach": 0}}, "gates.failures_to_breach"),
    ({"gates": {"guard": "yes"}}, "gates.guard"),
    ({"gates": {"custom": {}}}, "gates.custom"),
    ({"gates": {"custom": [{"name": f"g{i}", "query": "up{endpoint={{endpoint}}}", "max": 1} for i in range(6)]}}, "gates.custom"),
    ({"gates": {"custom": [{"name": "x", "query": "up{endpoint={{endpoint}}}"}]}}, "gates.custom[0]"),
    ({"gates": {"custom": ["up"]}}, "gates.custom[0]"),
    ({"gates": {"custom": [{"name": "bad name!", "query": "up{endpoint={{endpoint}}}", "max": 1}]}}, "gates.custom[0].name"),
    ({"gates": {"custom": [{"name": "x", "query": 5, "max": 1}]}}, "gates.custom[0].query"),
    ({"gates": {"custom": [{"name": "x", "query": " ", "max": 1}]}}, "gates.custom[0].query"),
    ({"gates": {"custom": [{"name": "x", "query": "up{endpoint={{endpoint}}}", "max": "1"}]}}, "gates.custom[0].max"),
    ({"gates": {"custom": [{"name": "x", "query": "up{endpoint={{endpoint}}}", "max": 1}, {"name": "x", "query": "up{endpoint={{endpoint}}}", "max": 2}]}}, "gates.custom"),
    ({"approval_required": "yes"}, "approval_required"),
    ({"approval_required": 1}, "approval_required"),
    ({"approval_required": None}, "approval_required"),
    ({"deadline_s": 59}, "deadline_s"),
    ({"deadline_s": "3600"}, "deadline_s"),
    ({"deadline_s": 3600.0}, "deadline_s"),
    ({"rollback_window_s": -1}, "rollback_window_s"),
    ({"rollback_window_s": "600"}, "rollback_window_s"),
    ({"start_at": 1767225600}, "start_at"),
    ({"start_at": "tomorrow"}, "start_at"),
    ({"start_at": "2099-01-01T00:00:00"}, "start_at"),  # no zone
    ({"start_at": "2099-13-01T00:00:00Z"}, "start_at"),
    ({"start_at": ["2099-01-01T00:00:00Z"]}, "start_at"),
    ({"start_at": "9999-12-31T23:59:59-01:00"}, "start_at"),  # after year 9999 in UTC
    ({"start_at": "2000-01-01T00:00:00Z"}, "start_at"),  # passed
    ({"start_at": "9999-12-31T00:00:00Z", "deadline_s": 30 * 24 * 3600}, ("deadline_s", "start_at")),  # after year 9999
    ({"reason": 5}, "reason"),
    ({"reason": "x" * 2001}, "reason"),
    ({"reason": None}, "reason"),
    ({"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize("overrides, field", BAD, ids=[f"{i}-{f if isinstance(f, str) else f[0]}" for i, (_, f) in enumerate(BAD)])
def test_a_bad_field_is_a_400_naming_it_and_writes_nothing(api, deployer, label_endpoint, overrides, field):
    data = {**body(), **overrides}
    before = counts()
    response = api(deployer).post(URL, data, format="json")
    assert response.status_code == 400, (response.status_code, getattr(response, "content", b"")[:500])
    assert set(fields(response)) & ({field} if isinstance(field, str) else set(field)), response.json()
    assert counts() == before


@pytest.mark.parametrize("raw", ["[]", '"deploy"', "5", "null", "{", '{"endpoint": "vision.scorer", "version": 2,}'])
def test_a_body_that_is_not_a_json_object_is_a_400(api, deployer, label_endpoint, raw):
    before = counts()
    for path in (URL, URL + "plan/"):
        response = api(deployer).post(path, raw, content_type="application/json")
        assert response.status_code == 400, (path, raw, response.content[:300])
    assert counts() == before


def test_bad_input_is_checked_before_the_endpoint_is_looked_up(api, deployer, label_endpoint):
    response = api(deployer).post(URL, body(endpoint="vision.nothing", version="2"), format="json")
    assert response.status_code == 400
    assert "version" in fields(response)


# -- one active deployment per endpoint --------------------------------------------------------------


def test_a_second_deployment_on_the_endpoint_is_a_409_naming_the_first(api, deployer, label_endpoint):
    client = api(deployer)
    first = client.post(URL, body(), format="json")
    assert first.status_code == 201
    first_id = first.json()["id"]
    before = counts()
    second = client.post(URL, body(version=3), format="json")
    assert second.status_code == 409, second.json()
    assert f"deployment {first_id}" in message(second, "endpoint")
    assert counts() == before
    assert Deployment.objects.get().pk == first_id


def test_after_the_first_ends_a_new_one_is_accepted(api, deployer, label_endpoint):
    client = api(deployer)
    first = Deployment.objects.get(pk=client.post(URL, body(), format="json").json()["id"])
    response = client.post(url(first, "abort"), {"reason": "wrong build"}, format="json")
    assert response.status_code == 200
    first.refresh_from_db()
    assert (first.state, first.cause) == (State.ROLLING_BACK, "abort")
    assert client.post(URL, body(version=3), format="json").status_code == 409  # rolling back still holds it
    step(first, Event.OK)  # the worker finishes the rollback
    first.refresh_from_db()
    assert first.state == State.ABORTED and first.finished_at is not None
    second = client.post(URL, body(version=3), format="json")
    assert second.status_code == 201, second.json()
    assert Deployment.objects.get(pk=second.json()["id"]).green_version.version == 3


def test_a_succeeded_deployment_does_not_block_the_next(api, deployer, as_deployer, model, label_endpoint, servers):
    first = drive(create(as_deployer), State.SUCCEEDED)
    assert label_of(model) == 2
    place_ready(model, [2], servers[1:2])  # green as the worker left it: READY where it was loaded
    response = api(deployer).post(URL, body(version=3), format="json")
    assert response.status_code == 201, response.json()
    d = Deployment.objects.get(pk=response.json()["id"])
    assert (d.blue_version.version, d.green_version.version) == (2, 3)
    first.refresh_from_db()
    assert first.state == State.SUCCEEDED


# -- plan -------------------------------------------------------------------------------------------


def test_plan_answers_the_plan_and_writes_nothing(api, deployer, label_endpoint):
    before = counts()
    response = api(deployer).post(URL + "plan/", body(strategy="linear", step_percent=25, bake_s=60, approval_required=True),
                                  format="json")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert (data["endpoint"], data["blue_version"], data["green_version"], data["servers"]) == ("vision.scorer", 1, 2, ["cpu-1"])
    assert data["steps"] == [{"percent": p, "bake_s": 60} for p in (25, 50, 75)]
    plan = data["plan"]
    assert set(plan) >= {"phases", "projected_s", "quota", "held_now", "peak", "surge", "over_quota"}
    assert [p["name"] for p in plan["phases"]] == [
        "provisioning", "step 1", "step 2", "step 3", "approval", "promoting", "rollback window", "retired"]
    assert [p["traffic_percent"] for p in plan["phases"]][:4] == [0, 25, 50, 75]
    assert (plan["quota"], plan["held_now"], plan["peak"], plan["surge"], plan["over_quota"]) == (0, 0, 0, 0, False)
    assert plan["projected_s"] >= 3 * 60
    assert counts() == before


def test_plan_needs_the_deployer_role(api, viewer, label_endpoint):
    before = counts()
    assert api(viewer).post(URL + "plan/", body(), format="json").status_code == 403
    assert counts() == before


# -- actions --------------------------------------------------------------------------------------

ALLOWED = [
    # action, state it starts in, state it ends in
    ("promote", State.SHIFTING, State.PROMOTING),
    ("promote", State.PAUSED, State.PROMOTING),
    ("rollback", State.BAKING, State.ROLLING_BACK),
    ("rollback", State.VALIDATING, State.ROLLING_BACK),
    ("abort", State.VERIFYING, State.ROLLING_BACK),
    ("abort", State.ANALYZING, State.ROLLING_BACK),
    ("rollback", State.PROMOTING, State.ROLLING_BACK),  # the label moved to green goes back to blue
    ("abort", State.PROMOTING, State.ROLLING_BACK),
    ("retry", State.FAILED, State.PENDING),
    ("retry", State.ROLLBACK_FAILED, State.ROLLING_BACK),
    ("resume", State.PAUSED, State.ANALYZING),
    ("approve", State.AWAITING_APPROVAL, State.PROMOTING),
    ("cancel", State.SCHEDULED, State.CANCELLED),
]
REFUSED = [
    ("promote", State.PENDING),
    ("promote", State.SUCCEEDED),
    ("rollback", State.SCHEDULED),
    ("rollback", State.ROLLED_BACK),
    ("abort", State.SUCCEEDED),
    ("abort", State.CANCELLED),
    ("retry", State.SHIFTING),
    ("retry", State.ABORTED),
    ("resume", State.ANALYZING),
    ("approve", State.PAUSED),
    ("cancel", State.PENDING),
    ("cancel", State.VALIDATING),
]


def in_state(as_deployer, state: State) -> Deployment:
    """A deployment of vision.scorer (v1 -> v2) in ``state``."""
    if state in (State.SCHEDULED, State.CANCELLED):
        d = create(as_deployer, start_at=soon())
        if state == State.CANCELLED:
            d = step(d, Event.CANCEL)
        return d
    d = create(as_deployer)
    return d if state == State.PENDING else drive(d, state)


@pytest.mark.parametrize("action, start, end", ALLOWED, ids=[f"{a}-from-{s}" for a, s, _ in ALLOWED])
def test_an_action_the_state_allows_moves_it_and_records_why(api, deployer, as_deployer, model, label_endpoint,
                                                              action, start, end):
    d = in_state(as_deployer, start)
    history = d.transitions.count()
    response = api(deployer).post(url(d, action), {"reason": f"{action} please"}, format="json")
    assert response.status_code == 200, response.json()
    d.refresh_from_db()
    event = services.PERSON_EVENTS[action]
    assert d.state == end == machine.transition(start, event)
    assert response.json()["state"] == end
    last = d.transitions.order_by("-id").first()
    assert d.transitions.count() == history + 1
    assert (last.from_state, last.to_state, last.event, last.actor_name, last.source, last.reason) == (
        start, end, event.value, "dana", "api", f"{action} please")
    [audit] = events(f"deployment.{event.value}")
    assert (audit.object_id, audit.actor_user_id, audit.reason) == (str(d.pk), deployer.pk, f"{action} please")
    assert audit.before == {"state": start.value} and audit.after["state"] == end.value
    if end == State.ROLLING_BACK:
        assert d.traffic_percent == 0 and d.cause == {"rollback": "rollback", "abort": "abort"}.get(action, d.cause)
    if end == State.PROMOTING:
        assert d.traffic_percent == 100 and label_of(model) == 2
    else:
        assert label_of(model) == 1
    if action == "retry" and start == State.FAILED:
        assert (d.cause, d.step_index, d.traffic_percent, d.finished_at) == ("", -1, 0, None)


@pytest.mark.parametrize("action, state", REFUSED, ids=[f"{a}-in-{s}" for a, s in REFUSED])
def test_an_action_the_state_refuses_is_a_409_naming_the_state_and_writes_nothing(api, deployer, as_deployer, model,
                                                                                label_endpoint, action, state):
    d = in_state(as_deployer, state)
    snapshot = Deployment.objects.filter(pk=d.pk).values().get()
    before = counts()
    label = label_of(model)
    response = api(deployer).post(url(d, action), {"reason": "try"}, format="json")
    assert response.status_code == 409, response.json()
    assert machine.describe(state) in message(response, "state"), response.json()
    d.refresh_from_db()
    assert Deployment.objects.filter(pk=d.pk).values().get() == snapshot
    assert counts() == before and label_of(model) == label


def test_promote_rewrites_a_pinned_endpoint_to_green_alone(api, deployer, as_deployer, pinned_endpoint):
    d = drive(create(as_deployer, endpoint="vision.fraud"), State.SHIFTING)
    response = api(deployer).post(url(d, "promote"), {"reason": "looks good"}, format="json")
    assert response.status_code == 200, response.json()
    d.refresh_from_db()
    assert (d.state, d.traffic_percent) == (State.PROMOTING, 100)
    assert variants_of(pinned_endpoint) == [("v2", 2, 100)]
    assert len(events("endpoint.update")) == 1 and len(events("deployment.promote")) == 1


def test_promote_and_the_label_move_are_one_transaction(as_deployer, model, label_endpoint, monkeypatch):
    from controlplane.deployments.services import transitions

    d = drive(create(as_deployer), State.SHIFTING)

    def broken(**kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(transitions, "audit_record", broken)
    before = counts()
    with pytest.raises(RuntimeError):
        services.deployment_act(actor=as_deployer, deployment=d, action="promote", reason="x")
    d.refresh_from_db()
    assert (d.state, d.traffic_percent) == (State.SHIFTING, 10)
    assert label_of(model) == 1 and counts() == before


def test_the_fast_rollback_within_the_window_moves_the_label_back(api, deployer, as_deployer, model, label_endpoint):
    d = drive(create(as_deployer, rollback_window_s=600), State.SUCCEEDED)
    assert label_of(model) == 2 and d.succeeded_at is not None
    response = api(deployer).post(url(d, "rollback"), {"reason": "regression"}, format="json")
    assert response.status_code == 200, response.json()
    d.refresh_from_db()
    assert (d.state, d.cause, d.traffic_percent) == (State.ROLLING_BACK, "rollback", 0)
    assert label_of(model) == 1
    assert len(events("deployment.rollback")) == 1 and events("label.move")[-1].after["version"] == 1


def test_the_fast_rollback_of_a_pinned_endpoint_restores_its_variants(api, deployer, as_deployer, pinned_endpoint):
    d = drive(create(as_deployer, endpoint="vision.fraud"), State.SUCCEEDED)
    assert variants_of(pinned_endpoint) == [("v2", 2, 100)]
    response = api(deployer).post(url(d, "rollback"), {"reason": "regression"}, format="json")
    assert response.status_code == 200, response.json()
    assert variants_of(pinned_endpoint) == [("a", 1, 100)]


def test_after_the_rollback_window_the_fast_rollback_is_a_409(api, deployer, as_deployer, model, label_endpoint):
    d = drive(create(as_deployer, rollback_window_s=60), State.SUCCEEDED)
    Deployment.objects.filter(pk=d.pk).update(succeeded_at=timezone.now() - timedelta(seconds=61))
    before = counts()
    response = api(deployer).post(url(d, "rollback"), {"reason": "too late"}, format="json")
    assert response.status_code == 409, response.json()
    assert "window" in message(response, "state")
    d.refresh_from_db()
    assert d.state == State.SUCCEEDED and label_of(model) == 2 and counts() == before


def test_an_action_with_a_bad_reason_is_a_400(api, deployer, as_deployer, label_endpoint):
    d = create(as_deployer)
    before = counts()
    for reason in (5, "x" * 2001, ["why"]):
        response = api(deployer).post(url(d, "abort"), {"reason": reason}, format="json")
        assert response.status_code == 400 and "reason" in fields(response), response.json()
    d.refresh_from_db()
    assert d.state == State.PENDING and counts() == before


def test_viewers_and_read_tokens_may_not_act(api, tokens, viewer, deployer, as_deployer, label_endpoint):
    d = create(as_deployer)
    refused = [api(viewer), tokens(deployer, ["read"]), tokens(deployer, ["infer"])]
    before = counts()
    for client in refused:
        for action in ("promote", "rollback", "abort", "retry", "resume", "approve", "cancel"):
            assert client.post(url(d, action), {}, format="json").status_code == 403
    d.refresh_from_db()
    assert d.state == State.PENDING and counts() == before


def test_a_deploy_token_may_act(tokens, deployer, as_deployer, label_endpoint):
    d = create(as_deployer)
    response = tokens(deployer, ["deploy"]).post(url(d, "abort"), {"reason": "ci"}, format="json")
    assert response.status_code == 200
    d.refresh_from_db()
    assert d.state == State.ROLLING_BACK
    assert events("deployment.abort")[0].token_id is not None


# -- team isolation ----------------------------------------------------------------------------------


@pytest.fixture
def theirs(foreign, as_outsider):
    """speech's deployment of speech.asr v1 -> v2."""
    return create(as_outsider, endpoint="speech.asr")


def test_another_teams_deployment_is_a_404_everywhere(api, deployer, as_deployer, label_endpoint, theirs):
    ours = create(as_deployer)
    client = api(deployer)
    assert client.get(url(theirs)).status_code == 404
    before = counts()
    for action in ("promote", "rollback", "abort", "retry", "resume", "approve", "cancel"):
        response = client.post(url(theirs, action), {"reason": "x"}, format="json")
        assert response.status_code == 404, (action, response.json())
    theirs.refresh_from_db()
    assert theirs.state == State.PENDING and counts() == before
    listed = client.get(URL).json()["results"]
    assert [d["id"] for d in listed] == [ours.pk]
    assert client.get(URL + "?state=pending").json()["results"] == listed
    assert client.get(url(ours)).status_code == 200


def test_a_missing_deployment_and_another_teams_read_the_same(api, deployer, theirs):
    client = api(deployer)
    hidden = client.post(url(theirs, "abort"), {}, format="json")
    missing = client.post(url(theirs.pk + 1000, "abort"), {}, format="json")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


def test_the_detail_shows_history_and_actions(api, deployer, as_deployer, label_endpoint):
    d = drive(create(as_deployer), State.PAUSED)
    data = api(deployer).get(url(d)).json()
    assert data["state"] == "paused" and data["actions"] == ["promote", "resume", "rollback", "abort"]
    assert [h["to_state"] for h in data["history"]] == [
        "pending", "validating", "provisioning", "verifying", "shifting", "baking", "analyzing", "paused"]
    assert AuditEvent.objects.filter(object_id=str(d.pk), action__startswith="deployment.").count() == 8
