"""Role × action × own-team/other-team matrix over every mutating API endpoint and UI action.

Oracle: every change writes an audit event, so an allowed action must answer 2xx (a redirect
with a success message for UI forms) and add audit events; a refused one must answer 4xx (or
send an anonymous browser to the login page) and add none. A refused UI form re-renders with its
errors and the status the API would give (ui_refusal_status).

Tokens: an admin's read-only token and infer-only token (the data plane's scope) are refused by
every write. Deployment actions build what they act on first (a deployment in the state the
action needs, blue READY, the endpoint), and pin their refusals: 403 for a role or scope too low,
404 for another team's deployment, 400 for another team's endpoint named in the body. Planning a
deployment is a read sent by POST: allowed or not, it writes no audit event.
"""
import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.accounts.models import ApiToken, Membership, Role, Team
from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.deployments.machine import RUNNING, State
from controlplane.deployments.models import Deployment
from controlplane.deployments.spec import Gates
from controlplane.endpoints.services import VariantSpec, endpoint_create
from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.placements.services import placement_create
from controlplane.registry.labels import label_set
from controlplane.registry.models import ModelVersion, VersionStatus
from controlplane.registry.services import model_create
from controlplane.serving.services import serving_config_save
from tests.conftest import TENSORS_IN, TENSORS_OUT, _user
from tests.fleet_fixtures import TEST_BUCKET

RANK = {"viewer": 1, "deployer": 2, "admin": 3}
TEAMS = ("vision", "speech")


@dataclass(frozen=True)
class Action:
    name: str
    method: str
    path: Callable[[dict, str], str]  # (world, team slug) -> url
    body: Callable[[dict, str], dict] | None
    needs: str  # "viewer" | "deployer" | "admin" (in the target team) | "platform" | "self" (one's own account)
    ui: bool = False
    multipart: bool = False
    prepare: Callable[[dict, str], None] | None = None  # builds what the action acts on, before counting events
    audited: bool = True  # False for a read through POST (a deployment's plan): allowed, yet writes no event
    refusal: Callable[["Action", tuple, str], tuple[int, ...]] | None = None  # the exact refusal statuses, if pinned


def _upload():
    f = io.BytesIO(b"print('hi')")
    f.name = "model.py"
    return f


DEPLOYMENTS = "/api/v1/deployments/"


def _deployment_ground(w, t) -> None:
    """Team t's blue (v1 of its model) READY on a server of its own and the endpoint t.dep pinned on
    v1, for the deployment actions only: the other actions' world stays as it was."""
    host, _ = Server.objects.get_or_create(name="dep-host", defaults={"pool": Pool.objects.get(name="cpu"),
                                                                      "http_url": "http://127.0.0.1:9"})
    model = w["models"][t]
    placement = Placement.objects.create(model=model, versions=[1], rendered_config={})
    PlacementTarget.objects.create(placement=placement, model=model, server=host, server_name=host.name,
                                   state=TargetState.READY, state_changed_at=timezone.now())
    w.setdefault("dep_endpoints", {})[t] = endpoint_create(
        actor=Actor.system(), team=w["teams"][t], model=model, name="dep", kind="pinned", variants=[VariantSpec("a", 1, 1)])


def _deployment_in(state: State):
    """A deployment of t.dep (v1 -> v2) in ``state``, as the worker or the schedule left it."""

    def prepare(w, t) -> None:
        _deployment_ground(w, t)
        model, now = w["models"][t], timezone.now()
        w.setdefault("deployments", {})[t] = Deployment.objects.create(
            team=w["teams"][t], endpoint=w["dep_endpoints"][t], model=model, blue_version=model.versions.get(version=1),
            green_version=model.versions.get(version=2), strategy="canary", steps=[{"percent": 10, "bake_s": 60}],
            placement_mode="same_servers", gates=Gates().as_dict(), state=state, state_changed_at=now,
            step_index=0 if state in RUNNING else -1, traffic_percent=10 if state in RUNNING else 0,
            cause="error" if state == State.FAILED else "",
            start_at=now + timedelta(hours=1) if state == State.SCHEDULED else None,
            plan={"green_versions": [1, 2], "blue_versions": [1], "blue_variants": [{"name": "a", "version": 1, "weight": 1}]},
        )

    return prepare


NAMES_THE_ENDPOINT_IN_THE_BODY = {"api: create deployment", "api: plan deployment"}


def _deployment_refusal(action: "Action", actor: tuple, target: str) -> tuple[int, ...]:
    """An infer-only token is no REST credential: 403. A team the actor cannot see (a read token
    reads as its owner): its deployment is a 404, its endpoint named in the body a 400 field error,
    the same answers as for missing ones. A role or token scope below deploy in a team the actor
    sees: 403."""
    name, role, platform, token = actor
    if name == "anonymous":
        return (401, 403)
    if token == "infer":
        return (403,)
    sees = platform or (target == "speech" if name == "outsider-admin" else target == "vision")
    if not sees:
        return (400,) if action.name in NAMES_THE_ENDPOINT_IN_THE_BODY else (404,)
    return (403,)


def _deployment_action(event: str, state: State) -> "Action":
    return Action(f"api: {event} deployment", "post", lambda w, t: f"{DEPLOYMENTS}{w['deployments'][t].pk}/{event}/",
                  lambda w, t: {"reason": f"{event} it"}, "deployer", prepare=_deployment_in(state),
                  refusal=_deployment_refusal)


DEPLOYMENT_ACTIONS = [
    Action("api: create deployment", "post", lambda w, t: DEPLOYMENTS,
           lambda w, t: {"endpoint": f"{t}.dep", "version": 2, "reason": "ship v2"}, "deployer",
           prepare=_deployment_ground, refusal=_deployment_refusal),
    Action("api: plan deployment", "post", lambda w, t: f"{DEPLOYMENTS}plan/",
           lambda w, t: {"endpoint": f"{t}.dep", "version": 2, "strategy": "linear"}, "deployer",
           prepare=_deployment_ground, audited=False, refusal=_deployment_refusal),
    _deployment_action("promote", State.SHIFTING),
    _deployment_action("rollback", State.BAKING),
    _deployment_action("abort", State.VALIDATING),
    _deployment_action("retry", State.FAILED),
    _deployment_action("resume", State.PAUSED),
    _deployment_action("approve", State.AWAITING_APPROVAL),
    _deployment_action("cancel", State.SCHEDULED),
]

ACTIONS = [
    Action("api: create team", "post", lambda w, t: "/api/v1/teams/", lambda w, t: {"slug": "new-team"}, "platform"),
    Action("api: register model", "post", lambda w, t: "/api/v1/models/",
           lambda w, t: {"team": t, "name": "new-model", "backend": "python", "inputs": TENSORS_IN, "outputs": TENSORS_OUT}, "deployer"),
    Action("api: register version", "post", lambda w, t: f"/api/v1/models/{w['models'][t].pk}/versions/",
           lambda w, t: {"version": 3, "files": [_upload()]}, "deployer", multipart=True),
    Action("api: register server", "post", lambda w, t: "/api/v1/servers/",
           lambda w, t: {"name": "new-server", "pool": "cpu", "http_url": "http://127.0.0.1:9"}, "platform"),
    Action("api: update server", "patch", lambda w, t: f"/api/v1/servers/{w['server'].pk}/", lambda w, t: {"gpu_count": 2}, "platform"),
    Action("api: remove server", "delete", lambda w, t: f"/api/v1/servers/{w['server'].pk}/", None, "platform"),
    Action("api: probe server", "post", lambda w, t: f"/api/v1/servers/{w['server'].pk}/probe/", None, "platform"),
    Action("api: create pool", "post", lambda w, t: "/api/v1/pools/", lambda w, t: {"name": "new-pool"}, "platform"),
    Action("api: delete pool", "delete", lambda w, t: "/api/v1/pools/empty/", None, "platform"),
    Action("api: set quota", "put", lambda w, t: f"/api/v1/quotas/{t}/", lambda w, t: {"gpus": 4, "reason": "q4"}, "platform"),
    Action("api: add member", "post", lambda w, t: f"/api/v1/teams/{t}/members/", lambda w, t: {"username": "newbie", "role": "viewer"}, "admin"),
    Action("api: change role", "patch", lambda w, t: f"/api/v1/teams/{t}/members/target-{t}/", lambda w, t: {"role": "deployer"}, "admin"),
    Action("api: remove member", "delete", lambda w, t: f"/api/v1/teams/{t}/members/target-{t}/", None, "admin"),
    Action("api: issue team token", "post", lambda w, t: "/api/v1/tokens/", lambda w, t: {"name": "ci", "scopes": ["read"], "team": t}, "admin"),
    Action("api: revoke team token", "post", lambda w, t: f"/api/v1/tokens/{w['tokens'][t].pk}/revoke/", None, "admin"),
    Action("ui: add member", "post", lambda w, t: f"/team/{t}/members/", lambda w, t: {"username": "newbie", "role": "viewer"}, "admin", ui=True),
    Action("ui: change role", "post", lambda w, t: f"/team/{t}/members/target-{t}/role/", lambda w, t: {"role": "deployer"}, "admin", ui=True),
    Action("ui: remove member", "post", lambda w, t: f"/team/{t}/members/target-{t}/remove/", None, "admin", ui=True),
    Action("ui: issue team token", "post", lambda w, t: "/team/tokens/",
           lambda w, t: {"name": "ci", "scopes": ["read"], "expires_in_days": 7, "team": t}, "admin", ui=True),
    Action("ui: revoke team token", "post", lambda w, t: f"/team/tokens/{w['tokens'][t].pk}/revoke/", None, "admin", ui=True),
    Action("api: set quota (patch)", "patch", lambda w, t: f"/api/v1/quotas/{t}/", lambda w, t: {"gpus": 5}, "platform"),
    Action("api: issue personal token", "post", lambda w, t: "/api/v1/tokens/", lambda w, t: {"name": "mine", "scopes": ["read"]}, "self"),
    Action("api: revoke personal token", "post", lambda w, t: f"/api/v1/tokens/{w['mine'].pk}/revoke/", None, "self"),
    Action("api: move label", "put", lambda w, t: f"/api/v1/models/{w['models'][t].pk}/labels/stable/",
           lambda w, t: {"version": 2, "reason": "release"}, "deployer"),
    Action("api: delete label", "delete", lambda w, t: f"/api/v1/models/{w['models'][t].pk}/labels/stable/",
           lambda w, t: {"reason": "done"}, "deployer"),
    Action("api: save serving config", "post", lambda w, t: f"/api/v1/models/{w['models'][t].pk}/serving-configs/",
           lambda w, t: {"spec": {"dynamic_batching": {"max_queue_delay_microseconds": 500}}, "reason": "tune"}, "admin"),
    Action("api: roll back serving config", "post", lambda w, t: f"/api/v1/models/{w['models'][t].pk}/serving-configs/1/rollback/",
           lambda w, t: {"reason": "undo"}, "admin"),
    Action("api: place model", "post", lambda w, t: "/api/v1/placements/",
           lambda w, t: {"model": w["models"][t].pk, "versions": [2], "servers": ["s2"]}, "deployer"),
    Action("api: retry placement", "post", lambda w, t: f"/api/v1/placements/{w['placements'][t].pk}/retry/", None, "deployer"),
    Action("api: remove placement", "delete", lambda w, t: f"/api/v1/placements/{w['placements'][t].pk}/", None, "deployer"),
    Action("ui: issue personal token", "post", lambda w, t: "/team/tokens/",
           lambda w, t: {"name": "mine", "scopes": ["read"], "expires_in_days": 7}, "self", ui=True),
    Action("ui: revoke personal token", "post", lambda w, t: f"/team/tokens/{w['mine'].pk}/revoke/", None, "self", ui=True),
    Action("ui: move label", "post", lambda w, t: f"/models/{w['models'][t].pk}/labels/move/",
           lambda w, t: {"name": "stable", "version": "2", "reason": "release", "expected_version": "1"}, "deployer", ui=True),
    Action("ui: delete label", "post", lambda w, t: f"/models/{w['models'][t].pk}/labels/delete/",
           lambda w, t: {"name": "stable", "reason": "done"}, "deployer", ui=True),
    Action("ui: save serving config", "post", lambda w, t: f"/models/{w['models'][t].pk}/serving-config/save/",
           lambda w, t: {"dynamic_batching": "on", "max_queue_delay_microseconds": "500", "reason": "tune"}, "admin", ui=True),
    Action("ui: roll back serving config", "post", lambda w, t: f"/models/{w['models'][t].pk}/serving-config/1/rollback/",
           lambda w, t: {"reason": "undo"}, "admin", ui=True),
    Action("ui: place model", "post", lambda w, t: f"/models/{w['models'][t].pk}/placements/",
           lambda w, t: {"versions": "2", "servers": "s2"}, "deployer", ui=True),
    Action("ui: retry placement", "post", lambda w, t: f"/placements/{w['placements'][t].pk}/retry/", None, "deployer", ui=True),
    Action("ui: remove placement", "post", lambda w, t: f"/placements/{w['placements'][t].pk}/remove/", None, "deployer", ui=True),
    Action("ui: register model", "post", lambda w, t: "/models/new/",
           lambda w, t: {"team": t, "name": "new-model", "backend": "python", "max_batch_size": "0",
                         "inputs-0-name": "INPUT0", "inputs-0-data_type": "TYPE_FP32", "inputs-0-dims": "4",
                         "outputs-0-name": "OUTPUT0", "outputs-0-data_type": "TYPE_FP32", "outputs-0-dims": "4"}, "deployer", ui=True),
    Action("ui: register version (upload)", "post", lambda w, t: f"/models/{w['models'][t].pk}/versions/upload/",
           lambda w, t: {"version": "3", "files": [_upload()]}, "deployer", ui=True),
    Action("ui: register version (S3)", "post", lambda w, t: f"/models/{w['models'][t].pk}/versions/from-s3/",
           lambda w, t: {"version": "4", "source_uri": f"s3://{TEST_BUCKET}/staging/{t}/m/build-1/"}, "deployer", ui=True),
    Action("api: drain server", "delete", lambda w, t: f"/api/v1/servers/{w['placed_on'].pk}/?drain=true", None, "platform"),
    Action("api: update pool", "patch", lambda w, t: "/api/v1/pools/empty/", lambda w, t: {"description": "spare"}, "platform"),
    Action("ui: create pool", "post", lambda w, t: "/fleet/pools/new/", lambda w, t: {"name": "new-pool"}, "platform", ui=True),
    Action("ui: edit pool", "post", lambda w, t: "/fleet/pools/empty/edit/",
           lambda w, t: {"name": "empty", "description": "spare"}, "platform", ui=True),
    Action("ui: remove pool", "post", lambda w, t: "/fleet/pools/empty/remove/", None, "platform", ui=True),
    Action("ui: register server", "post", lambda w, t: "/fleet/servers/new/",
           lambda w, t: {"name": "new-server", "pool": "cpu", "http_url": "http://127.0.0.1:9", "gpu_count": "0"}, "platform", ui=True),
    Action("ui: edit server", "post", lambda w, t: f"/fleet/servers/{w['server'].pk}/edit/",
           lambda w, t: {"name": "s1", "pool": "cpu", "http_url": "http://127.0.0.1:9", "gpu_count": "2"}, "platform", ui=True),
    Action("ui: remove server", "post", lambda w, t: f"/fleet/servers/{w['server'].pk}/remove/", None, "platform", ui=True),
    Action("ui: drain server", "post", lambda w, t: f"/fleet/servers/{w['placed_on'].pk}/remove/",
           lambda w, t: {"drain": "on"}, "platform", ui=True),
    Action("api: request full audit verification", "post", lambda w, t: "/api/v1/audit/verify/full/", None, "platform"),
    Action("ui: request full audit verification", "post", lambda w, t: "/audit/verify-full/", None, "platform", ui=True),
    Action("api: create endpoint", "post", lambda w, t: "/api/v1/endpoints/",
           lambda w, t: {"team": t, "name": "new-ep", "model": w["models"][t].pk, "kind": "pinned",
                         "variants": [{"name": "a", "version": 2, "weight": 1}]}, "deployer"),
    Action("api: update endpoint", "patch", lambda w, t: f"/api/v1/endpoints/{w['endpoints'][t].pk}/",
           lambda w, t: {"access": "open", "variants": [{"name": "a", "version": 1, "weight": 1}, {"name": "b", "version": 2, "weight": 1}]},
           "deployer"),
    Action("api: delete endpoint", "delete", lambda w, t: f"/api/v1/endpoints/{w['endpoints'][t].pk}/", None, "deployer"),
    Action("ui: create endpoint", "post", lambda w, t: "/endpoints/new/",
           lambda w, t: {"team": t, "model": str(w["models"][t].pk), "name": "new-ep", "kind": "pinned", "access": "token",
                         "variant-0-name": "a", "variant-0-version": "2", "variant-0-weight": "1"}, "deployer", ui=True),
    Action("ui: edit endpoint", "post", lambda w, t: f"/endpoints/{w['endpoints'][t].pk}/edit/",
           lambda w, t: {"name": "ep", "kind": "pinned", "access": "open",
                         "variant-0-name": "a", "variant-0-version": "1", "variant-0-weight": "3"}, "deployer", ui=True),
    Action("ui: delete endpoint", "post", lambda w, t: f"/endpoints/{w['endpoints'][t].pk}/delete/", None, "deployer", ui=True),
    *DEPLOYMENT_ACTIONS,
]
# Who acts: (name, role in vision or None, platform admin?, the scope of the token it acts through or None)
ACTORS = [
    ("anonymous", None, False, None),
    ("outsider-admin", None, False, None),  # admin of speech only; targets below make "own" mean vision
    ("viewer", "viewer", False, None),
    ("deployer", "deployer", False, None),
    ("team-admin", "admin", False, None),
    ("team-admin-read-token", "admin", False, "read"),
    ("team-admin-infer-token", "admin", False, "infer"),  # the data plane's scope: no use on the REST API
    ("platform-admin", None, True, None),
]


def allowed(action: Action, actor: tuple, target: str) -> bool:
    name, role, platform, token = actor
    if name == "anonymous" or token:
        return False
    if platform or action.needs == "self":
        return True
    if action.needs == "platform":
        return False
    if name == "outsider-admin":
        role = "admin" if target == "speech" else None
    elif target != "vision":
        role = None
    return role is not None and RANK[role] >= RANK[action.needs]


CASES = [
    pytest.param(action, actor, target, id=f"{action.name}|{actor[0]}|{target}")
    for action in ACTIONS
    for actor in ACTORS
    for target in (TEAMS if action.needs not in ("platform", "self") else ("vision",))
]


@pytest.fixture(scope="module")
def built_world(django_db_setup, django_db_blocker):
    """The world every case starts from, built once for the module's ~900 cases (building it took
    0.3 s a case) inside a transaction that is rolled back at the end. Each case runs in a
    savepoint of it (pytest-django's ``db``), so what one case writes is gone for the next."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield _build_world()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def world(db, s3, built_world):
    for slug in TEAMS:  # a staged build per team, to register a version from (the bucket is emptied per test)
        s3.put_object(Bucket=TEST_BUCKET, Key=f"staging/{slug}/m/build-1/model.py", Body=b"# staged")
    keys = ("teams", "people", "models", "tokens", "server", "placed_on", "placements", "scoped_tokens", "endpoints")
    return {k: built_world[k] for k in keys}  # what an action's prepare adds stays in this case


def _build_world() -> dict:
    system = Actor.system()
    teams = {slug: Team.objects.create(slug=slug) for slug in TEAMS}
    people = {}
    for slug, team in teams.items():
        for role in ("admin", "deployer", "viewer"):
            user = _user(f"{role}-{slug}")
            Membership.objects.create(user=user, team=team, role=role)
            people[f"{role}-{slug}"] = user
        Membership.objects.create(user=_user(f"target-{slug}"), team=team, role=Role.VIEWER)
    _user("newbie")
    people["platform"] = _user("platform", is_staff=True)
    models = {
        slug: model_create(actor=system, team=team, name="m", backend="python", max_batch_size=8,
                           inputs=TENSORS_IN, outputs=TENSORS_OUT)
        for slug, team in teams.items()
    }
    soon = timezone.now() + timedelta(days=1)
    tokens = {slug: token_create(actor=system, team=team, name="ci", scopes=["read"], expires_at=soon)[0] for slug, team in teams.items()}
    pool = Pool.objects.create(name="cpu")
    Pool.objects.create(name="empty")
    server = Server.objects.create(name="s1", pool=pool, http_url="http://127.0.0.1:9")
    placed_on = Server.objects.create(name="s2", pool=pool, http_url="http://127.0.0.1:9")
    placements = {}
    for slug, model in models.items():
        for number in (1, 2):
            ModelVersion.objects.create(model=model, version=number, status=VersionStatus.READY,
                                        artifact_uri=f"s3://b/r/{model.triton_name}/{number}/", checksum=f"sha256:{number}")
        label_set(actor=system, model=model, name="stable", version=1, reason="first")
        serving_config_save(actor=system, model=model, spec={}, reason="defaults")
        serving_config_save(actor=system, model=model, spec={"dynamic_batching": {}}, reason="batch")
        placements[slug], _ = placement_create(actor=system, model=model, versions=[1], servers=[placed_on])
        placements[slug].targets.update(state=TargetState.FAILED, error="load failed")  # so retry has work
    endpoints = {
        slug: endpoint_create(actor=system, team=teams[slug], model=model, name="ep", kind="pinned",
                              variants=[VariantSpec("a", 1, 1)])
        for slug, model in models.items()
    }
    for user in people.values():  # everyone has a personal token to revoke
        token_create(actor=system, user=user, name="old", scopes=["read"], expires_at=soon)
    scoped_tokens = {scope: token_create(actor=system, user=people["admin-vision"], name=f"only-{scope}", scopes=[scope],
                                         expires_at=soon)[1] for scope in ("read", "infer")}
    return {"teams": teams, "people": people, "models": models, "tokens": tokens, "server": server,
            "placed_on": placed_on, "placements": placements, "scoped_tokens": scoped_tokens, "endpoints": endpoints}


def acting_user(world, actor):
    name, role, platform, token = actor
    if name == "anonymous":
        return world["people"]["deployer-vision"]  # an anonymous caller tries someone's token
    if name == "outsider-admin":
        return world["people"]["admin-speech"]
    if platform:
        return world["people"]["platform"]
    return world["people"][f"{role}-vision"]


def client_for(world, actor) -> APIClient:
    name, role, platform, token = actor
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world['scoped_tokens'][token]}")
    elif name == "outsider-admin":
        client.force_login(world["people"]["admin-speech"])
    elif platform:
        client.force_login(world["people"]["platform"])
    elif role:
        client.force_login(world["people"][f"{role}-vision"])
    return client


TEAM_IN_A_FORM_FIELD = {"ui: issue team token", "ui: register model", "ui: create endpoint"}


def ui_refusal_status(action: Action, actor: tuple, target: str) -> int:
    """A refused UI form re-renders with the status the API gives: a team named in a form field
    that the actor cannot see is a 400 field error, an object in the URL they cannot see a 404,
    and a missing role a 403."""
    name, role, platform, token = actor
    if action.needs == "platform":
        return 403  # no team in play: a missing platform role, for every team's admin alike
    sees = platform or (target == "speech" if name == "outsider-admin" else target == "vision")
    if not sees:
        return 400 if action.name in TEAM_IN_A_FORM_FIELD else 404
    if action.name == "ui: revoke team token":
        return 404  # a team's tokens are listed to its admins only, as in the API
    return 403


@pytest.mark.parametrize("action, actor, target", CASES)
def test_matrix(world, action, actor, target, settings):
    settings.SWITCHYARD_TRITON_TIMEOUT_SECONDS = 1
    client = client_for(world, actor)
    world["mine"] = ApiToken.objects.get(user=acting_user(world, actor), name="old")
    if action.prepare is not None:
        action.prepare(world, target)
    before = AuditEvent.objects.count()
    body = action.body(world, target) if action.body else None
    kwargs = {"format": "multipart" if action.multipart else "json"} if not action.ui else {}
    response = getattr(client, action.method)(action.path(world, target), body, **kwargs)
    wrote = AuditEvent.objects.count() - before
    expected = allowed(action, actor, target)
    if action.ui:
        if actor[0] == "anonymous" or actor[3]:
            assert response.status_code == 302 and "/login/" in response["Location"]
        elif expected:
            assert response.status_code in (201, 302), response.status_code
            if response.status_code == 302:
                followed = client.get(response["Location"]).content.decode()
                assert 'class="message success"' in followed and "message error" not in followed
        else:
            assert response.status_code == ui_refusal_status(action, actor, target), response.status_code
    elif expected:
        assert 200 <= response.status_code < 300, (response.status_code, getattr(response, "data", None))
    else:
        assert response.status_code in (400, 401, 403, 404), (response.status_code, getattr(response, "data", None))
        if action.refusal is not None:
            assert response.status_code in action.refusal(action, actor, target), (response.status_code, response.data)
    assert (wrote > 0) == (expected and action.audited), f"{action.name} by {actor[0]} on {target}: wrote {wrote} events"


def test_matrix_size():
    """The note reports this number; keep it honest."""
    assert len(CASES) == sum(len(TEAMS) if a.needs not in ("platform", "self") else 1 for a in ACTIONS) * len(ACTORS)
    assert len({a.name for a in ACTIONS}) == len(ACTIONS)
