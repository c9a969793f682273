"""build_table: the routing table as the gateway reads it (gateway/table.py), from the database.

Endpoints are rows here (their services are tested beside them); labels, placements, servers and
tokens come from the real registry, fleet and accounts."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.accounts import services as accounts
from controlplane.accounts.models import ApiToken, Membership, Role, Team
from controlplane.audit.context import Actor
from controlplane.endpoints.models import Endpoint, EndpointVariant
from controlplane.endpoints.routing import build_table
from controlplane.fleet.models import Pool, Server, ServerStatus
from controlplane.placements.models import Placement, PlacementTarget, TargetState
from controlplane.registry.labels import label_set
from gateway.table import FORMAT, TableError, parse_table
from tests.quotas.conftest import make_model, make_version


@pytest.fixture
def numbers(model):
    """vision/fraud-scorer v1-v3, ready."""
    return [make_version(model, n) for n in (1, 2, 3)]


@pytest.fixture
def servers(db):
    pool = Pool.objects.create(name="rt-pool")
    return [Server.objects.create(name=f"rt-{i}", pool=pool, http_url=f"http://10.0.0.{i + 1}:8000") for i in range(3)]


def place(model, versions, servers, state=TargetState.READY) -> Placement:
    placement = Placement.objects.create(model=model, versions=sorted(versions), rendered_config={})
    for server in servers:
        PlacementTarget.objects.create(placement=placement, model=model, server=server, server_name=server.name,
                                       state=state, state_changed_at=timezone.now())
    return placement


def label_endpoint(team, model, name="scorer", label="stable", **extra):
    return Endpoint.objects.create(team=team, model=model, name=name, kind="label", label=label, **extra)


def pinned_endpoint(team, model, variants, name="fraud", **extra):
    endpoint = Endpoint.objects.create(team=team, model=model, name=name, kind="pinned", **extra)
    for position, (variant, version, weight) in enumerate(variants):
        EndpointVariant.objects.create(endpoint=endpoint, name=variant, version=version, weight=weight, position=position)
    return endpoint


def move(model, label, number):
    label_set(actor=Actor.system(), model=model, name=label, version=number, reason="test")


def endpoint_of(table, name):
    return next(e for e in table["endpoints"] if e["name"] == name)


def test_an_empty_control_plane_builds_an_empty_valid_table(db):
    table = build_table()
    assert {k: table[k] for k in ("format", "version", "servers", "tokens", "endpoints")} == {
        "format": FORMAT, "version": 0, "servers": [], "tokens": [], "endpoints": []}
    assert parse_table(table).endpoints == {}


def test_a_label_endpoint_has_one_variant_on_the_servers_where_its_version_is_ready(team, model, numbers, servers):
    move(model, "stable", 2)
    move(model, "canary", 3)
    place(model, [2], servers[:2])
    place(model, [3], servers[2:], state=TargetState.LOADING)  # not READY: not routed to
    label_endpoint(team, model)
    table = build_table(version=7)
    assert table["version"] == 7
    assert endpoint_of(table, "vision.scorer") == {
        "name": "vision.scorer", "team": "vision", "access": "token", "sticky": None,
        "labels": {"canary": 3, "latest": 3, "stable": 2},
        "variants": [{"name": "stable", "version": 2, "weight": 100, "model": "vision.fraud-scorer",
                      "servers": [servers[0].pk, servers[1].pk], "guard": None}],
        "shadow": None,
    }
    assert table["servers"] == [
        {"id": s.pk, "name": s.name, "url": s.http_url, "healthy": True} for s in servers[:2]
    ]  # only the servers referenced


def test_a_label_endpoint_whose_label_is_unset_has_no_variants(team, model, numbers):
    label_endpoint(team, model, label="canary")
    assert endpoint_of(build_table(), "vision.scorer")["variants"] == []


def test_a_label_endpoint_may_follow_the_computed_latest(team, model, numbers, servers):
    place(model, [3], servers[:1])
    label_endpoint(team, model, label="latest")
    [variant] = endpoint_of(build_table(), "vision.scorer")["variants"]
    assert (variant["name"], variant["version"], variant["servers"]) == ("latest", 3, [servers[0].pk])


def test_pinned_variants_come_in_position_order_each_on_its_own_servers(team, model, numbers, servers):
    v1, v2, _ = numbers
    place(model, [1, 2], servers[:1])  # a placement of two versions serves both
    place(model, [2], servers[1:2])
    endpoint = pinned_endpoint(team, model, [("blue", v1, 90), ("green", v2, 10)], sticky_header="X-User-Id")
    EndpointVariant.objects.filter(endpoint=endpoint, name="blue").update(position=5)  # green first now
    row = endpoint_of(build_table(), "vision.fraud")
    assert row["sticky"] == {"header": "X-User-Id"}
    assert [(v["name"], v["version"], v["weight"], v["servers"]) for v in row["variants"]] == [
        ("green", 2, 10, [servers[0].pk, servers[1].pk]),
        ("blue", 1, 90, [servers[0].pk]),
    ]


def test_a_shadow_is_a_zero_weight_variant_with_its_tolerances(team, model, numbers, servers):
    v1, _, v3 = numbers
    place(model, [3], servers[2:])
    pinned_endpoint(team, model, [("main", v1, 1)], shadow_version=v3, shadow_percent=12.5, shadow_rtol=0.01,
                    shadow_atol=0.001, sticky_cookie="uid", access="open")
    pinned_endpoint(team, model, [("main", v1, 1)], name="quiet", shadow_version=v3, shadow_percent=0)
    table = build_table()
    row = endpoint_of(table, "vision.fraud")
    assert (row["access"], row["sticky"]) == ("open", {"cookie": "uid"})
    assert row["shadow"] == {
        "variant": {"name": "shadow-v3", "version": 3, "weight": 0, "model": "vision.fraud-scorer",
                    "servers": [servers[2].pk], "guard": None},
        "percent": 12.5, "rtol": 0.01, "atol": 0.001,
    }
    assert endpoint_of(table, "vision.quiet")["shadow"] is None  # 0 %: no shadow at all
    assert [s["id"] for s in table["servers"]] == [servers[2].pk]


@pytest.mark.parametrize("status, healthy", [
    (ServerStatus.UP, True), (ServerStatus.UNKNOWN, True), (ServerStatus.NOT_READY, True), (ServerStatus.DOWN, False),
])
def test_a_server_is_unhealthy_only_when_the_prober_finds_it_down(team, model, numbers, servers, status, healthy):
    move(model, "stable", 1)
    place(model, [1], servers[:1])
    Server.objects.filter(pk=servers[0].pk).update(status=status)
    label_endpoint(team, model)
    table = build_table()
    assert table["servers"] == [{"id": servers[0].pk, "name": "rt-0", "url": "http://10.0.0.1:8000", "healthy": healthy}]
    assert endpoint_of(table, "vision.scorer")["variants"][0]["servers"] == [servers[0].pk]  # listed even when down


def test_endpoints_of_every_team_are_listed_under_their_team(team, other_team, model, numbers, servers):
    asr = make_model(other_team, "asr")
    make_version(asr, 1)
    move(model, "stable", 1)
    move(asr, "stable", 1)
    label_endpoint(team, model)
    label_endpoint(other_team, asr)
    table = build_table()
    assert [(e["name"], e["team"]) for e in table["endpoints"]] == [("speech.scorer", "speech"), ("vision.scorer", "vision")]
    assert endpoint_of(table, "speech.scorer")["labels"] == {"latest": 1, "stable": 1}


# -- tokens ---------------------------------------------------------------------------------------

def issue(actor_user, scopes, *, user=None, team=None, days=30):
    token, secret = accounts.token_create(
        actor=Actor(user=actor_user, source="api"), user=user, team=team, name="t", scopes=scopes,
        expires_at=timezone.now() + timedelta(days=days))
    return token


def tokens_by_hash():
    return {t["sha256"]: t for t in build_table()["tokens"]}


def test_team_tokens_are_listed_for_their_team_with_data_plane_scopes_only(team, team_admin):
    infer = issue(team_admin, ["infer", "read"], team=team)
    deploy = issue(team_admin, ["deploy"], team=team)
    read = issue(team_admin, ["read"], team=team)
    listed = tokens_by_hash()
    assert listed[infer.secret_hash] == {"team": "vision", "sha256": infer.secret_hash, "scopes": ["infer"],
                                         "expires_at": infer.expires_at.timestamp()}
    assert listed[deploy.secret_hash]["scopes"] == ["deploy"]
    assert read.secret_hash not in listed  # read means nothing to the gateway


def test_revoked_and_expired_tokens_are_left_out(team, team_admin):
    revoked = issue(team_admin, ["infer"], team=team)
    accounts.token_revoke(actor=Actor(user=team_admin, source="api"), token=revoked)
    expired = issue(team_admin, ["infer"], team=team)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    never = issue(team_admin, ["infer"], team=team)
    ApiToken.objects.filter(pk=never.pk).update(expires_at=None)
    listed = tokens_by_hash()
    assert revoked.secret_hash not in listed and expired.secret_hash not in listed
    assert listed[never.secret_hash]["expires_at"] is None


def test_a_personal_token_acts_for_its_users_only_team_with_deploy_capped_by_role(team, deployer, viewer):
    dana = issue(deployer, ["infer", "deploy"], user=deployer)
    vic = issue(viewer, ["infer", "read"], user=viewer)
    listed = tokens_by_hash()
    assert listed[dana.secret_hash]["team"] == "vision" and listed[dana.secret_hash]["scopes"] == ["infer", "deploy"]
    assert listed[vic.secret_hash]["scopes"] == ["infer"]
    # dana is demoted to viewer: her token's deploy no longer counts on the data plane
    Membership.objects.filter(user=deployer).update(role=Role.VIEWER)
    assert tokens_by_hash()[dana.secret_hash]["scopes"] == ["infer"]
    # a viewer's deploy-only token means nothing to the gateway: left out
    Membership.objects.filter(user=deployer).update(role=Role.DEPLOYER)
    only_deploy = issue(deployer, ["deploy"], user=deployer)
    Membership.objects.filter(user=deployer).update(role=Role.VIEWER)
    assert only_deploy.secret_hash not in tokens_by_hash()


def test_a_personal_token_of_a_member_of_several_teams_or_none_is_left_out(team, other_team, deployer):
    token = issue(deployer, ["infer"], user=deployer)
    assert token.secret_hash in tokens_by_hash()
    Membership.objects.create(user=deployer, team=other_team, role=Role.VIEWER)
    assert token.secret_hash not in tokens_by_hash()  # which team would it call for? not a guess
    Membership.objects.filter(user=deployer).delete()
    assert token.secret_hash not in tokens_by_hash()


def test_tokens_of_an_inactive_user_are_left_out(team, deployer):
    token = issue(deployer, ["infer"], user=deployer)
    type(deployer).objects.filter(pk=deployer.pk).update(is_active=False)
    assert token.secret_hash not in tokens_by_hash()


# -- cost and safety -------------------------------------------------------------------------------

def build_queries() -> int:
    with CaptureQueriesContext(connection) as captured:
        build_table()
    return len(captured.captured_queries)


def test_the_build_costs_the_same_queries_whatever_the_size(team, team_admin, deployer, model, numbers, servers):
    v1, v2, v3 = numbers
    move(model, "stable", 1)
    place(model, [1], servers[:1])
    label_endpoint(team, model)
    pinned_endpoint(team, model, [("a", v1, 1), ("b", v2, 1)], shadow_version=v3, shadow_percent=5)
    issue(team_admin, ["infer"], team=team)
    issue(deployer, ["infer"], user=deployer)
    small = build_queries()

    for n in range(8):
        other = make_model(Team.objects.get_or_create(slug=f"t{n}")[0], f"m{n}")
        versions = [make_version(other, k) for k in (1, 2, 3)]
        move(other, "stable", 2)
        place(other, [1, 2], servers)
        label_endpoint(other.team, other, name=f"l{n}")
        pinned_endpoint(other.team, other, [("a", versions[0], 1), ("b", versions[1], 1)], name=f"p{n}",
                        shadow_version=versions[2], shadow_percent=5)
        issue(team_admin, ["infer", "deploy"], team=team)
    assert len(build_table()["endpoints"]) == 18
    # endpoints, variants, labels, latest, targets, deployments, servers, 2 tokens, members
    assert build_queries() == small == 10


def test_a_table_that_breaks_the_contract_is_never_returned(team, model, numbers):
    v1 = numbers[0]
    pinned_endpoint(team, model, [("no spaces allowed", v1, 1)])
    with pytest.raises(TableError, match=r"endpoints\[0\]\.variants\[0\]\.name"):
        build_table()
