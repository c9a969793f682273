"""/api/v1/models/{pk}/serving-configs/: owner admin, member, outsider; status, then the rows."""
import pytest

from controlplane.accounts.models import ApiToken
from controlplane.accounts.tokens import hash_token
from controlplane.audit.models import AuditEvent
from controlplane.fleet.models import Pool, Server
from controlplane.serving.models import ServingConfig

BATCHING = {"dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 100}}


def url(model, tail=""):
    return f"/api/v1/models/{model.pk}/serving-configs/{tail}"


def save(client, model, spec, reason="tune", **extra):
    return client.post(url(model), {"spec": spec, "reason": reason, **extra}, format="json")


def test_create_returns_201_then_200_when_unchanged(api, team_admin, model):
    client = api(team_admin)
    first = save(client, model, BATCHING, "enable batching")
    assert first.status_code == 201, first.json()
    body = first.json()
    assert (body["revision"], body["reason"], body["created_by"]) == (1, "enable batching", "ada")
    assert body["spec"]["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    again = save(client, model, {**BATCHING, "max_batch_size": 8}, "retry")
    assert again.status_code == 200 and again.json()["revision"] == 1
    assert ServingConfig.objects.count() == 1
    assert AuditEvent.objects.filter(action="serving_config.save").count() == 1
    assert AuditEvent.objects.get(action="serving_config.save").source == "api"


def test_invalid_spec_is_400_naming_the_field_and_writes_nothing(api, team_admin, model):
    response = save(api(team_admin), model, {"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [2, 8]},
                                             "instance_group": [{"kind": "KIND_CPU", "count": 0}]})
    assert response.status_code == 400
    body = response.json()
    assert set(body["fields"]) == {"spec.dynamic_batching.preferred_batch_size[1]", "spec.instance_group[0].count"}
    assert "spec.dynamic_batching.preferred_batch_size[1]" in body["detail"]
    assert not ServingConfig.objects.exists()


@pytest.mark.parametrize("body", [{"spec": BATCHING}, {"spec": BATCHING, "reason": ""}, {"spec": BATCHING, "reason": "  "}])
def test_a_save_without_a_reason_is_400_naming_reason(api, team_admin, model, body):
    """Decided in issue 8: a config change needs a reason, in the API as in the UI."""
    response = api(team_admin).post(url(model), body, format="json")
    assert response.status_code == 400 and list(response.json()["fields"]) == ["reason"]
    assert not ServingConfig.objects.exists() and not AuditEvent.objects.filter(action__startswith="serving_config").exists()


def test_unknown_fields_in_body_and_in_spec_are_400(api, team_admin, model):
    body = save(api(team_admin), model, {}, extra_field=1).json()
    assert body["fields"] == {"extra_field": ["Unknown field."]}
    body = save(api(team_admin), model, {"dynamic_batching": {"max_delay": 5}}).json()
    assert list(body["fields"]) == ["spec.dynamic_batching.max_delay"]
    body = save(api(team_admin), model, [1]).json()
    assert list(body["fields"]) == ["spec"]
    assert not ServingConfig.objects.exists()


def test_malformed_json_is_400_in_the_house_format(api, team_admin, model):
    response = api(team_admin).post(url(model), data='{"spec": {', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Malformed request body") and "body" in response.json()["fields"]
    assert api(team_admin).post(url(model), data="[1]", content_type="application/json").json()["fields"] == {"body": ["Send a JSON object."]}


def test_deployers_are_403_and_other_teams_404(api, deployer, outsider_admin, model, team_admin):
    assert save(api(deployer), model, BATCHING).status_code == 403
    assert save(api(outsider_admin), model, BATCHING).status_code == 404
    save(api(team_admin), model, BATCHING)
    for path in ("", "1/", "diff/?from=1&to=1"):
        assert api(outsider_admin).get(url(model, path)).status_code == 404
    assert api(outsider_admin).post(url(model, "preview/"), {"spec": {}}, format="json").status_code == 404
    assert api(outsider_admin).post(url(model, "1/rollback/"), {"reason": "x"}, format="json").status_code == 404
    assert api(deployer).post(url(model, "1/rollback/"), {"reason": "x"}, format="json").status_code == 403
    assert api(None).get(url(model)).status_code in (401, 403)
    assert ServingConfig.objects.count() == 1


def test_team_token_needs_the_admin_scope(api, team_admin, model):
    from datetime import timedelta

    from django.utils import timezone

    from controlplane.accounts.services import token_create
    from controlplane.audit.context import Actor

    def issue(name, scopes):
        expires = timezone.now() + timedelta(days=1)
        _, secret = token_create(actor=Actor(user=team_admin, source="ui"), name=name, scopes=scopes, expires_at=expires, team=model.team)
        client = api()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client, secret

    deploy_client, _ = issue("ci", ["read", "deploy"])
    assert save(deploy_client, model, BATCHING).status_code == 403
    admin_client, admin_secret = issue("ops", ["read", "deploy", "admin"])
    assert save(admin_client, model, BATCHING).status_code == 201
    assert AuditEvent.objects.get(action="serving_config.save").token_id == ApiToken.objects.get(secret_hash=hash_token(admin_secret)).pk


def test_list_is_newest_first_and_paginated(api, team_admin, viewer, model):
    client = api(team_admin)
    for size in (8, 4, 2):
        save(client, model, {"max_batch_size": size}, f"size {size}")
    body = api(viewer).get(url(model) + "?page_size=2").json()
    assert body["count"] == 3 and [r["revision"] for r in body["results"]] == [3, 2]
    assert body["results"][0]["spec"]["max_batch_size"] == 2 and body["next"]


def test_retrieve_renders_triton_json_for_sample_versions(api, team_admin, viewer, model):
    save(api(team_admin), model, {**BATCHING, "version_policy": {"latest": {"num_versions": 2}}})
    body = api(viewer).get(url(model, "1/")).json()
    assert body["revision"] == 1 and body["rendered_for_versions"] == []
    assert body["rendered"]["name"] == "vision.fraud-scorer"
    assert body["rendered"]["version_policy"] == {"latest": {"num_versions": 2}}
    assert body["rendered"]["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    placed = api(viewer).get(url(model, "1/?versions=2,1")).json()
    assert placed["rendered"]["version_policy"] == {"specific": {"versions": [1, 2]}}
    assert api(viewer).get(url(model, "1/?versions=a")).json()["fields"] == {"versions": ["Give version numbers separated by commas, such as 1,2."]}
    assert api(viewer).get(url(model, "2/")).status_code == 404


def test_diff_between_revisions(api, team_admin, viewer, model):
    client = api(team_admin)
    save(client, model, BATCHING)
    save(client, model, {"dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 500}})
    body = api(viewer).get(url(model, "diff/?from=1&to=2")).json()
    assert body == {"from": 1, "to": 2, "changes": [
        {"path": "dynamic_batching.preferred_batch_size", "old": [4, 8], "new": [2, 4]},
        {"path": "dynamic_batching.max_queue_delay_microseconds", "old": 100, "new": 500},
    ]}
    missing = api(viewer).get(url(model, "diff/?from=1&to=7"))
    assert missing.status_code == 400 and list(missing.json()["fields"]) == ["to"]
    assert list(api(viewer).get(url(model, "diff/?to=2")).json()["fields"]) == ["from"]


def test_preview_validates_diffs_and_renders_without_writing(api, team_admin, viewer, model):
    save(api(team_admin), model, BATCHING)
    ok = api(viewer).post(url(model, "preview/"), {"spec": {**BATCHING, "response_cache": {"enable": True}}}, format="json")
    assert ok.status_code == 200
    body = ok.json()
    assert (body["valid"], body["errors"], body["current_revision"]) == (True, {}, 1)
    assert body["changes"] == [{"path": "response_cache.enable", "old": False, "new": True}]
    assert body["rendered"]["response_cache"] == {"enable": True}
    bad = api(viewer).post(url(model, "preview/"), {"spec": {"dynamic_batching": {"preferred_batch_size": [9]}}}, format="json").json()
    assert bad["valid"] is False and list(bad["errors"]) == ["spec.dynamic_batching.preferred_batch_size[0]"]
    assert bad["rendered"] is None and bad["changes"] is None
    assert ServingConfig.objects.count() == 1


def test_preview_checks_gpu_kinds_against_a_pool(api, viewer, model):
    cpu = Pool.objects.create(name="cpu")
    Server.objects.create(name="cpu-1", pool=cpu, http_url="http://127.0.0.1:9", gpu_count=0)
    gpu = Pool.objects.create(name="gpu")
    Server.objects.create(name="gpu-1", pool=gpu, http_url="http://127.0.0.1:10", gpu_count=2)
    spec = {"instance_group": [{"kind": "KIND_GPU", "count": 1}]}
    on_cpu = api(viewer).post(url(model, "preview/"), {"spec": spec, "pool": "cpu"}, format="json").json()
    assert on_cpu["valid"] is False and list(on_cpu["errors"]) == ["spec.instance_group[0].kind"]
    assert api(viewer).post(url(model, "preview/"), {"spec": spec, "pool": "gpu"}, format="json").json()["valid"] is True
    unknown = api(viewer).post(url(model, "preview/"), {"spec": spec, "pool": "nope"}, format="json")
    assert unknown.status_code == 400 and list(unknown.json()["fields"]) == ["pool"]


def test_preview_before_any_revision_compares_with_the_defaults(api, viewer, model):
    body = api(viewer).post(url(model, "preview/"), {"spec": {"max_batch_size": 4}, "versions": [3]}, format="json").json()
    assert body["current_revision"] is None
    assert body["changes"] == [{"path": "max_batch_size", "old": 8, "new": 4}]
    assert body["rendered"]["version_policy"] == {"specific": {"versions": [3]}}


def test_rollback_endpoint(api, team_admin, model):
    client = api(team_admin)
    save(client, model, BATCHING)
    save(client, model, {})
    assert client.post(url(model, "1/rollback/"), {}, format="json").json()["fields"] == {"reason": ["This field is required."]}
    response = client.post(url(model, "1/rollback/"), {"reason": "p99 regression"}, format="json")
    assert response.status_code == 201 and response.json()["revision"] == 3
    assert ServingConfig.objects.get(revision=3).spec == ServingConfig.objects.get(revision=1).spec
    assert client.post(url(model, "3/rollback/"), {"reason": "again"}, format="json").status_code == 200
    assert client.post(url(model, "9/rollback/"), {"reason": "x"}, format="json").status_code == 404


def test_schema_lists_the_routes(api, viewer):
    paths = api(viewer).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    for path in ("/api/v1/models/{model_pk}/serving-configs/", "/api/v1/models/{model_pk}/serving-configs/{revision}/",
                 "/api/v1/models/{model_pk}/serving-configs/diff/", "/api/v1/models/{model_pk}/serving-configs/preview/",
                 "/api/v1/models/{model_pk}/serving-configs/{revision}/rollback/"):
        assert path in paths


@pytest.mark.parametrize("revisions", [1, 15])
def test_list_query_count_does_not_grow(api, team_admin, model, django_assert_max_num_queries, revisions):
    for size in range(revisions):
        save(api(team_admin), model, {"max_batch_size": 8 - size % 8}, str(size))
    client = api(team_admin)
    with django_assert_max_num_queries(8):
        assert client.get(url(model)).status_code == 200
