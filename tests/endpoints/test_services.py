"""endpoint_create / endpoint_update / endpoint_delete: the rules, the audit, roles and teams."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext

from controlplane.audit.context import Actor
from controlplane.common.errors import Conflict
from controlplane.endpoints import selectors, services
from controlplane.endpoints.models import Endpoint, EndpointVariant
from controlplane.placements.models import TargetState
from controlplane.registry.models import VersionStatus
from tests.endpoints.conftest import V, events, make_servers, pinned, place_ready
from tests.quotas.conftest import make_model, make_version

S = services.ShadowSpec


def refusal(call) -> dict:
    with pytest.raises(ValidationError) as caught:
        call()
    return caught.value.message_dict


# Create


def test_create_pinned_writes_the_endpoint_its_variants_and_one_audit_event(as_deployer, team, model, versions):
    endpoint = pinned(as_deployer, team, model, sticky_header="X-User-Id", access="open",
                      shadow=S(version=3, percent=12.5))
    endpoint.refresh_from_db()
    assert endpoint.public_name == "vision.fraud" and endpoint.created_by == as_deployer.user
    assert [(v.name, v.version.version, v.weight, v.position) for v in endpoint.variants.all()] == [
        ("a", 1, 90, 0), ("b", 2, 10, 1)]
    assert (endpoint.shadow_version.version, endpoint.shadow_percent) == (3, 12.5)
    [event] = events("endpoint.create")
    assert event.team == team and event.actor_user == as_deployer.user and event.object_repr == "vision.fraud"
    assert event.before is None
    assert event.after == {
        "public_name": "vision.fraud", "name": "fraud", "model": "vision/fraud-scorer", "kind": "pinned", "label": "",
        "access": "open", "sticky": {"header": "X-User-Id"},
        "variants": [{"name": "a", "version": 1, "weight": 90}, {"name": "b", "version": 2, "weight": 10}],
        "shadow": {"version": 3, "percent": 12.5, "rtol": 1e-5, "atol": 1e-6}, "description": "",
    }


def test_create_label_bound_follows_an_existing_label_and_stores_no_variants(as_deployer, team, model, stable):
    endpoint = services.endpoint_create(actor=as_deployer, team=team, model=model, name="scorer", kind="label", label="stable")
    assert endpoint.kind == "label" and endpoint.label == "stable" and not endpoint.variants.exists()
    assert events("endpoint.create")[0].after["variants"] == []


def test_latest_is_a_label_a_model_with_a_ready_version_has(as_deployer, team, model, versions):
    services.endpoint_create(actor=as_deployer, team=team, model=model, name="newest", kind="label", label="latest")
    assert Endpoint.objects.get(name="newest").label == "latest"


def test_a_label_the_model_does_not_have_is_refused_naming_the_field(as_deployer, team, model, versions):
    errors = refusal(lambda: services.endpoint_create(actor=as_deployer, team=team, model=model, name="e", kind="label", label="canary"))
    assert list(errors) == ["label"] and "no label 'canary'" in errors["label"][0]
    errors = refusal(lambda: services.endpoint_create(actor=as_deployer, team=team, model=model, name="e", kind="label", label=""))
    assert list(errors) == ["label"]
    assert not Endpoint.objects.exists() and events("endpoint.create") == []


@pytest.mark.parametrize("variants, field, words", [
    ([], "variants", "1 to 16"),
    ([V(f"v{i}", 1 + i % 4, 1) for i in range(17)], "variants", "1 to 16"),
    ([V("a", 1, 0), V("b", 2, 0)], "variants", "add up to 0"),
    ([V("a", 1, 5), V("a", 2, 5)], "variants[1].name", "Two variants are named a"),
    ([V("-bad", 1, 5)], "variants[0].name", "letter or digit"),
    ([V("a", 9, 5)], "variants[0].version", "no registered, ready version 9"),
    ([V("a", 1, 5), V("b", 1, 5)], "variants[1].version", "already another variant"),
    ([V("a", "1", 5)], "variants[0].version", "version number"),
    ([V("a", 1, 1_000_001)], "variants[0].weight", "0 to 1000000"),
    ([V("a", 1, -1)], "variants[0].weight", "0 to 1000000"),
    ([V("a", 1, True)], "variants[0].weight", "whole number"),
])
def test_variant_rules_name_the_field(as_deployer, team, model, versions, variants, field, words):
    errors = refusal(lambda: pinned(as_deployer, team, model, variants=variants))
    assert field in errors and words in " ".join(errors[field]), errors
    assert not Endpoint.objects.exists() and not EndpointVariant.objects.exists() and events("endpoint.create") == []


def test_a_registering_version_is_not_ready(as_deployer, team, model, versions):
    make_version(model, 7, status=VersionStatus.REGISTERING)
    errors = refusal(lambda: pinned(as_deployer, team, model, variants=[V("a", 7, 1)]))
    assert "variants[0].version" in errors


def test_sixteen_variants_and_the_largest_weight_are_fine(as_deployer, team, model):
    for n in range(1, 17):
        make_version(model, n)
    endpoint = pinned(as_deployer, team, model, variants=[V(f"v{n}", n, 1_000_000 if n == 1 else 0) for n in range(1, 17)])
    assert endpoint.variants.count() == 16


@pytest.mark.parametrize("extra, field", [
    ({"name": "Fraud"}, "name"),
    ({"name": "-x"}, "name"),
    ({"name": "a" * 64}, "name"),
    ({"access": "public"}, "access"),
    ({"kind": "weighted"}, "kind"),
    ({"sticky_header": "X User"}, "sticky.header"),
    ({"sticky_header": "X-User-Id:"}, "sticky.header"),
    ({"sticky_cookie": "a;b"}, "sticky.cookie"),
    ({"sticky_header": "X-User-Id", "sticky_cookie": "uid"}, "sticky"),
    ({"label": "stable"}, "label"),
    ({"shadow": S(version=9, percent=5)}, "shadow.version"),
    ({"shadow": S(version=1, percent=5)}, "shadow.version"),  # serves already
    ({"shadow": S(version=3, percent=100.5)}, "shadow.percent"),
    ({"shadow": S(version=3, percent=float("nan"))}, "shadow.percent"),
    ({"shadow": S(version=3, percent=5, rtol=-1)}, "shadow.rtol"),
    ({"shadow": S(version=3, percent=5, atol=float("inf"))}, "shadow.atol"),
    ({"description": "x" * 2001}, "description"),
])
def test_each_rule_names_its_field_and_nothing_is_written(as_deployer, team, model, versions, extra, field):
    args = {"name": "fraud", "kind": "pinned", "variants": [V("a", 1, 90), V("b", 2, 10)], **extra}
    errors = refusal(lambda: services.endpoint_create(actor=as_deployer, team=team, model=model, **args))
    assert field in errors, errors
    assert not Endpoint.objects.exists() and events("endpoint.create") == []


def test_every_problem_is_listed_at_once(as_deployer, team, model, versions):
    errors = refusal(lambda: pinned(as_deployer, team, model, name="Bad", variants=[V("a", 9, -1)], sticky_cookie="a b"))
    assert set(errors) == {"name", "variants[0].version", "variants[0].weight", "sticky.cookie"}


def test_a_label_bound_endpoint_cannot_shadow_the_version_its_label_serves(as_deployer, team, model, stable):
    errors = refusal(lambda: services.endpoint_create(actor=as_deployer, team=team, model=model, name="e", kind="label",
                                                      label="stable", shadow=S(version=1, percent=5)))
    assert "already serves" in errors["shadow.version"][0]


def test_a_name_the_team_uses_is_a_409_and_nothing_is_written(as_deployer, team, model, versions):
    pinned(as_deployer, team, model)
    with pytest.raises(Conflict) as caught:
        pinned(as_deployer, team, model)
    assert caught.value.field == "name" and caught.value.status_code == 409
    assert Endpoint.objects.count() == 1 and len(events("endpoint.create")) == 1


def test_another_team_may_use_the_same_name(as_deployer, as_outsider, team, other_team, model, foreign_model):
    make_version(model, 1)
    pinned(as_deployer, team, model, variants=[V("a", 1, 1)])
    pinned(as_outsider, other_team, foreign_model, variants=[V("a", 1, 1)])
    assert sorted(e.public_name for e in Endpoint.objects.all()) == ["speech.fraud", "vision.fraud"]


def test_a_model_of_another_team_is_refused_without_naming_it(platform_admin, team, foreign_model):
    errors = refusal(lambda: pinned(Actor(user=platform_admin, source="api"), team, foreign_model, variants=[V("a", 1, 1)]))
    assert errors == {"model": ["No such model in team vision."]}


# Roles and teams


def test_viewers_may_not_create(as_viewer, team, model, versions):
    with pytest.raises(PermissionDenied):
        pinned(as_viewer, team, model)
    assert not Endpoint.objects.exists() and events("endpoint.create") == []


def test_another_team_is_a_404_before_any_check(as_outsider, team, model, versions):
    # Even an invalid request says only "no such object": nothing about vision's model or versions.
    with pytest.raises(Http404):
        pinned(as_outsider, team, model, variants=[V("a", 99, 1)])
    with pytest.raises(Http404):
        services.endpoint_create(actor=as_outsider, team=team, model=model, name="e", kind="label", label="nope")


def test_update_and_delete_need_the_deployer_role_in_the_endpoints_team(as_deployer, as_viewer, as_outsider, team, model, versions):
    endpoint = pinned(as_deployer, team, model)
    for actor, error in ((as_viewer, PermissionDenied), (as_outsider, Http404)):
        with pytest.raises(error):
            services.endpoint_update(actor=actor, endpoint=endpoint, access="open")
        with pytest.raises(error):
            services.endpoint_delete(actor=actor, endpoint=endpoint)
    assert Endpoint.objects.filter(pk=endpoint.pk, access="token").exists()
    assert events("endpoint.update") == [] and events("endpoint.delete") == []


def test_team_admins_and_platform_admins_may_change_endpoints(team_admin, platform_admin, as_deployer, team, model, versions):
    endpoint = pinned(as_deployer, team, model)
    assert services.endpoint_update(actor=Actor(user=team_admin, source="ui"), endpoint=endpoint, access="open")
    assert services.endpoint_update(actor=Actor(user=platform_admin, source="api"), endpoint=endpoint, access="token")
    assert [e.actor_name for e in events("endpoint.update")] == ["ada", "pat"]


def test_a_read_token_may_not_change_an_endpoint(deployer, team, model, versions):
    with pytest.raises(PermissionDenied, match="deploy scope"):
        pinned(Actor(user=deployer, source="api", token_id=1, token_scopes=("read",)), team, model)


# Update


def test_update_records_before_and_after_and_replaces_the_variants(as_deployer, team, model, versions):
    endpoint = pinned(as_deployer, team, model)
    changed = services.endpoint_update(actor=as_deployer, endpoint=endpoint, variants=[V("a", 1, 50), V("c", 3, 50)],
                                       sticky_cookie="uid")
    assert changed is True
    assert [(v.name, v.version.version, v.weight) for v in endpoint.variants.all()] == [("a", 1, 50), ("c", 3, 50)]
    [event] = events("endpoint.update")
    assert event.before["variants"] == [{"name": "a", "version": 1, "weight": 90}, {"name": "b", "version": 2, "weight": 10}]
    assert event.after["variants"] == [{"name": "a", "version": 1, "weight": 50}, {"name": "c", "version": 3, "weight": 50}]
    assert (event.before["sticky"], event.after["sticky"]) == (None, {"cookie": "uid"})


def test_an_update_that_changes_nothing_writes_nothing(as_deployer, team, model, versions):
    endpoint = pinned(as_deployer, team, model)
    variant_ids = list(endpoint.variants.values_list("pk", flat=True))
    assert services.endpoint_update(actor=as_deployer, endpoint=endpoint, access="token",
                                    variants=[V("a", 1, 90), V("b", 2, 10)]) is False
    assert events("endpoint.update") == [] and list(endpoint.variants.values_list("pk", flat=True)) == variant_ids


def test_a_refused_update_leaves_everything_as_it_was(as_deployer, team, model, versions):
    endpoint = pinned(as_deployer, team, model)
    errors = refusal(lambda: services.endpoint_update(actor=as_deployer, endpoint=endpoint, access="open",
                                                      variants=[V("a", 1, 5), V("z", 99, 5)]))
    assert list(errors) == ["variants[1].version"]
    endpoint.refresh_from_db()
    assert endpoint.access == "token" and [v.name for v in endpoint.variants.all()] == ["a", "b"]
    assert events("endpoint.update") == []


def test_switching_kinds_drops_what_the_other_kind_used(as_deployer, team, model, stable):
    endpoint = pinned(as_deployer, team, model)
    services.endpoint_update(actor=as_deployer, endpoint=endpoint, kind="label", label="stable")
    assert endpoint.kind == "label" and not endpoint.variants.exists()
    services.endpoint_update(actor=as_deployer, endpoint=endpoint, kind="pinned", variants=[V("x", 2, 1)])
    endpoint.refresh_from_db()
    assert endpoint.label == "" and [v.name for v in endpoint.variants.all()] == ["x"]
    errors = refusal(lambda: services.endpoint_update(actor=as_deployer, endpoint=endpoint, kind="pinned", label="stable"))
    assert "label" in errors


def test_renaming_onto_a_used_name_is_a_409(as_deployer, team, model, versions):
    first = pinned(as_deployer, team, model, name="one")
    pinned(as_deployer, team, model, name="two")
    with pytest.raises(Conflict):
        services.endpoint_update(actor=as_deployer, endpoint=first, name="two")
    first.refresh_from_db()
    assert first.name == "one" and events("endpoint.update") == []


def test_the_team_and_the_model_are_not_editable(as_deployer, team, model, versions):
    endpoint = pinned(as_deployer, team, model)
    with pytest.raises(ValueError):
        services.endpoint_update(actor=as_deployer, endpoint=endpoint, model=model)


def test_removing_the_shadow(as_deployer, team, model, versions):
    endpoint = pinned(as_deployer, team, model, shadow=S(version=3, percent=10))
    services.endpoint_update(actor=as_deployer, endpoint=endpoint, shadow=None)
    endpoint.refresh_from_db()
    assert endpoint.shadow_version is None and endpoint.shadow_percent == 0
    assert events("endpoint.update")[0].after["shadow"] is None


# Delete


def test_delete_removes_the_endpoint_and_its_variants_and_audits_what_it_was(as_deployer, team, model, versions):
    endpoint = pinned(as_deployer, team, model)
    pk = endpoint.pk
    services.endpoint_delete(actor=as_deployer, endpoint=endpoint)
    assert not Endpoint.objects.filter(pk=pk).exists() and not EndpointVariant.objects.exists()
    [event] = events("endpoint.delete")
    assert event.object_id == str(pk) and event.object_repr == "vision.fraud" and event.after is None
    assert event.before["variants"][0] == {"name": "a", "version": 1, "weight": 90}


# Publication


def test_every_successful_change_asks_for_publication_and_a_refusal_does_not(monkeypatch, as_deployer, team, model, versions):
    calls = []
    monkeypatch.setattr(services, "_publish", lambda: calls.append(1))
    endpoint = pinned(as_deployer, team, model)
    services.endpoint_update(actor=as_deployer, endpoint=endpoint, access="open")
    services.endpoint_update(actor=as_deployer, endpoint=endpoint, access="open")  # nothing changed
    with pytest.raises(ValidationError):
        services.endpoint_update(actor=as_deployer, endpoint=endpoint, name="Bad")
    services.endpoint_delete(actor=as_deployer, endpoint=endpoint)
    assert len(calls) == 3


# Status


def test_status_lists_the_ready_servers_of_each_variant(as_deployer, team, model, versions, pool):
    s1, s2, s3, s4 = make_servers(pool, "triton-1", "triton-2", "triton-3", "triton-4")
    place_ready(model, [1], [s1, s2])
    place_ready(model, [2, 3], [s3])
    place_ready(model, [2], [s4], state=TargetState.LOADING)
    endpoint = pinned(as_deployer, team, model, shadow=S(version=3, percent=5))
    status = selectors.endpoint_status(selectors.endpoint_get(as_deployer.user, endpoint.pk))
    assert [(v.name, v.version, v.weight, v.servers) for v in status.variants] == [
        ("a", 1, 90, ("triton-1", "triton-2")), ("b", 2, 10, ("triton-3",))]
    assert status.shadow.servers == ("triton-3",) and status.state == "serving"


def test_no_ready_server_when_no_variant_with_traffic_has_one(as_deployer, team, model, versions, pool):
    s1, s2 = make_servers(pool, "triton-1", "triton-2")
    place_ready(model, [1], [s1], state=TargetState.FAILED)
    place_ready(model, [3], [s2])  # a version no variant serves
    endpoint = pinned(as_deployer, team, model, variants=[V("a", 1, 1), V("b", 2, 0)])
    status = selectors.endpoint_status(endpoint)
    assert status.state == "no ready server" and all(v.servers == () for v in status.variants)
    place_ready(make_model(team, "other"), [1], [s1])  # another model's v1 is no help
    assert selectors.endpoint_status(endpoint).state == "no ready server"


def test_a_label_bound_endpoint_serves_what_its_label_points_at_now(as_deployer, team, model, stable, pool):
    from controlplane.registry.labels import label_set

    [s1] = make_servers(pool, "triton-1")
    place_ready(model, [2], [s1])
    endpoint = services.endpoint_create(actor=as_deployer, team=team, model=model, name="e", kind="label", label="stable")
    assert selectors.endpoint_status(endpoint).state == "no ready server"
    label_set(actor=as_deployer, model=model, name="stable", version=2, reason="release")
    [variant] = selectors.endpoint_status(endpoint).variants
    assert (variant.name, variant.version, variant.servers) == ("stable", 2, ("triton-1",))


def test_statuses_of_many_endpoints_cost_the_same_queries_as_of_one(as_deployer, team, model, versions, pool, stable):
    servers = make_servers(pool, *[f"t{i}" for i in range(6)])

    def count():
        endpoints = list(selectors.endpoints_visible(as_deployer.user))
        with CaptureQueriesContext(connection) as ctx:
            statuses = selectors.endpoint_statuses(endpoints)
        assert len(statuses) == len(endpoints)
        return len(ctx.captured_queries)

    pinned(as_deployer, team, model, name="e0")
    services.endpoint_create(actor=as_deployer, team=team, model=model, name="l0", kind="label", label="stable")
    services.endpoint_create(actor=as_deployer, team=team, model=model, name="n0", kind="label", label="latest")
    place_ready(model, [1], servers[:1])
    few = count()
    for i in range(1, 6):
        other = make_model(team, f"m{i}")
        make_version(other, 1)
        pinned(as_deployer, team, other, name=f"e{i}", variants=[V("a", 1, 1)], shadow=None)
        services.endpoint_create(actor=as_deployer, team=team, model=model, name=f"l{i}", kind="label",
                                 label="latest" if i % 2 else "stable")
        place_ready(other, [1], servers[i:i + 1])
    assert count() == few == 3


def test_a_committed_change_publishes_a_routing_table_with_the_endpoint(django_capture_on_commit_callbacks, as_deployer, team,
                                                                         model, versions):
    from controlplane.endpoints.models import RoutingTableState

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        pinned(as_deployer, team, model)
    assert callbacks, "the publication runs after the commit"
    state = RoutingTableState.objects.get(pk=1)
    [published] = [e for e in state.body["endpoints"] if e["name"] == "vision.fraud"]
    assert [(v["name"], v["version"], v["weight"]) for v in published["variants"]] == [("a", 1, 90), ("b", 2, 10)]
