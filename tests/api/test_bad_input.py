"""Bad input anywhere in the API is a 4xx in the house shape, naming the field, and writes nothing.

Each case here used to be a 500 (or a silent coercion): deep JSON, integers beyond the database's
range, NUL characters PostgreSQL cannot store, null where the column is NOT NULL, oversized bodies
and strings or floats stored as integers.
"""
import io

import pytest
from rest_framework import serializers

from controlplane.accounts.models import Membership, Role
from controlplane.audit.models import AuditEvent
from controlplane.common import api as common_api
from controlplane.fleet.models import Pool, Server
from controlplane.placements.models import Placement
from controlplane.quotas.models import GpuQuota
from controlplane.registry.models import LabelMove, Model, ModelVersion, VersionLabel
from controlplane.serving.models import ServingConfig
from tests.conftest import TENSORS_IN, TENSORS_OUT, _user
from tests.quotas.conftest import make_version

DEEP = 50_000
MEDIUM = 200  # parses in Python, but deeper than anyone needs


def deep_list(n=DEEP) -> str:
    return "[" * n + "]" * n


def deep_object(n=DEEP) -> str:
    return '{"a":' * n + "1" + "}" * n


@pytest.fixture
def world(db, team, deployer, model, platform_admin):
    """vision/fraud-scorer v1 and v2, a label, a serving config, a pool with a server, and a team admin."""
    admin = _user("ada")
    Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
    make_version(model, 1)
    make_version(model, 2)
    ServingConfig.objects.create(model=model, revision=1, spec={"max_batch_size": 8})
    pool = Pool.objects.create(name="cpu")
    server = Server.objects.create(name="triton-0", pool=pool, http_url="http://127.0.0.1:9", labels={"zone": "a"})
    return {"model": model, "admin": admin, "server": server}


def counts():
    return {
        "events": AuditEvent.objects.count(),
        "models": Model.objects.count(),
        "versions": ModelVersion.objects.count(),
        "labels": VersionLabel.objects.count(),
        "moves": LabelMove.objects.count(),
        "configs": ServingConfig.objects.count(),
        "placements": Placement.objects.count(),
        "quotas": GpuQuota.objects.count(),
        "servers": list(Server.objects.order_by("pk").values_list("name", "labels", "gpu_count")),
    }


def assert_refused(response, field, status=400):
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    names = list(body.get("fields", {}))
    assert any(n == field or n.startswith(f"{field}.") or n.startswith(f"{field}[") for n in names), body
    return body


def send_json(client, method, url, raw: str):
    return getattr(client, method)(url, data=raw, content_type="application/json")


# -- deep nesting ---------------------------------------------------------------------------

def _deep_cases(model_pk):
    models = "/api/v1/models/"
    return [
        ("post", models, '{"team": "vision", "name": "m2", "backend": "python", "outputs": [], "inputs": %s}', "inputs", "deployer"),
        ("put", f"{models}{model_pk}/labels/stable/", '{"version": 1, "reason": %s}', "reason", "deployer"),
        ("post", f"{models}{model_pk}/serving-configs/", '{"reason": "x", "spec": %s}', "spec", "admin"),
        ("post", f"{models}{model_pk}/serving-configs/preview/", '{"spec": %s}', "spec", "admin"),
        ("post", f"{models}{model_pk}/versions/", '{"version": 3, "source_uri": "s3://b/p/", "metadata": %s}', "metadata", "deployer"),
        ("patch", "/api/v1/servers/%(server)s/", '{"labels": %s}', "labels", "platform_admin"),
    ]


@pytest.mark.parametrize("depth", [DEEP, MEDIUM])
@pytest.mark.parametrize("case", range(6))
def test_deeply_nested_json_is_400_naming_the_field(api, world, deployer, platform_admin, case, depth):
    method, url, template, field, who = _deep_cases(world["model"].pk)[case]
    url = url % {"server": world["server"].pk} if "%(server)s" in url else url
    user = {"deployer": deployer, "admin": world["admin"], "platform_admin": platform_admin}[who]
    before = counts()
    for nested in (deep_list(depth), deep_object(depth)):
        response = send_json(api(user), method, url, template % nested)
        body = assert_refused(response, field)
        assert "deep" in body["detail"]
    assert counts() == before


def test_deep_json_in_a_multipart_field_is_400(api, world, deployer):
    url = f"/api/v1/models/{world['model'].pk}/versions/"
    before = counts()
    for nested in (deep_object(), deep_object(MEDIUM)):
        upload = io.BytesIO(b"print(1)")
        upload.name = "model.py"
        response = api(deployer).post(url, {"version": "3", "files": [upload], "metadata": nested})
        assert_refused(response, "metadata")
    assert counts() == before


def test_deep_json_at_the_top_of_the_body_is_400(api, world, deployer):
    response = send_json(api(deployer), "post", "/api/v1/models/", deep_list())
    assert_refused(response, "body")


def test_moderate_nesting_is_still_accepted(api, world, deployer, s3):
    from tests.fleet_fixtures import TEST_BUCKET

    s3.put_object(Bucket=TEST_BUCKET, Key="staging/vision/fraud-scorer/b1/model.py", Body=b"code")
    metadata = {"build": {"git": {"sha": "abc", "tags": [["a"]]}}}
    response = api(deployer).post(f"/api/v1/models/{world['model'].pk}/versions/",
                                  {"version": 3, "source_uri": f"s3://{TEST_BUCKET}/staging/vision/fraud-scorer/b1/", "metadata": metadata}, format="json")
    assert response.status_code == 201, response.json()
    assert ModelVersion.objects.get(model=world["model"], version=3).metadata == metadata


def test_deep_json_in_the_serving_config_form_is_an_error_not_a_500(client, world):
    client.force_login(world["admin"])
    url = f"/models/{world['model'].pk}/serving-config/preview/"
    for field in ("model_warmup", "extra_instance_groups"):
        response = client.post(url, {field: deep_list()})
        assert response.status_code in (200, 400), response.status_code
        assert b"deep" in response.content
    assert ServingConfig.objects.count() == 1


# -- integers beyond the database's (or Triton's) range -----------------------------------

@pytest.mark.parametrize("number", [2**31, 2**63, 10**30, -(2**63) - 1])
def test_version_numbers_beyond_the_column_are_400(api, world, deployer, number):
    before = counts()
    url = f"/api/v1/models/{world['model'].pk}/versions/"
    assert_refused(api(deployer).post(url, {"version": number, "source_uri": "s3://b/p/"}, format="json"), "version")
    label = f"/api/v1/models/{world['model'].pk}/labels/stable/"
    assert_refused(api(deployer).put(label, {"version": number, "reason": "r"}, format="json"), "version")
    assert_refused(api(deployer).put(label, {"version": 1, "reason": "r", "expected_version": number}, format="json"),
                   "expected_version")
    assert counts() == before


@pytest.mark.parametrize("body, field", [
    ({"versions": [10**20]}, "versions"),
    ({"versions": [2**31]}, "versions"),
    ({"config_revision": 2**63}, "config_revision"),
    ({"model": 10**20}, "model"),
])
def test_placement_numbers_beyond_the_column_are_400(api, world, deployer, body, field):
    before = counts()
    payload = {"model": world["model"].pk, "versions": [1], "servers": ["triton-0"]} | body
    assert_refused(api(deployer).post("/api/v1/placements/", payload, format="json"), field)
    assert counts() == before


@pytest.mark.parametrize("query, field", [
    ("diff/?from=99999999999999999999&to=1", "from"),
    ("diff/?from=1&to=2147483648", "to"),
    ("1/?versions=99999999999999999999", "versions"),
])
def test_serving_config_query_numbers_beyond_the_column_are_400(api, world, deployer, query, field):
    assert_refused(api(deployer).get(f"/api/v1/models/{world['model'].pk}/serving-configs/{query}"), field)


def test_preview_versions_beyond_the_column_are_400(api, world):
    url = f"/api/v1/models/{world['model'].pk}/serving-configs/preview/"
    assert_refused(api(world["admin"]).post(url, {"spec": {}, "versions": [2**40]}, format="json"), "versions")


@pytest.mark.parametrize("value", ["-1.79e308", "1e400", "99999999999999999999", "1.5", "nan", "inf"])
def test_number_filters_refuse_what_is_not_an_id(api, world, deployer, value):
    assert_refused(api(deployer).get(f"/api/v1/placements/?model={value}"), "model")


@pytest.mark.parametrize("path", [
    "/api/v1/models/99999999999999999999/",
    "/api/v1/models/99999999999999999999/versions/",
    "/api/v1/models/%(model)s/versions/99999999999999999999/",
    "/api/v1/models/%(model)s/serving-configs/99999999999999999999/",
    "/api/v1/placements/99999999999999999999/",
    "/api/v1/servers/99999999999999999999/",
    "/api/v1/tokens/99999999999999999999/",
    "/api/v1/audit/events/99999999999999999999/",
])
def test_ids_in_the_path_beyond_the_column_are_404(api, world, deployer, platform_admin, path):
    response = api(platform_admin if "servers" in path else deployer).get(path % {"model": world["model"].pk})
    assert response.status_code == 404, (response.status_code, response.content[:300])
    assert response.json() == {"detail": "Not found."} or "detail" in response.json()


@pytest.mark.parametrize("dims", [[2**63], [-(2**63)], [1, 2**64]])
def test_tensor_dims_beyond_int64_are_400(api, world, deployer, dims):
    payload = {"team": "vision", "name": "m2", "backend": "python", "outputs": TENSORS_OUT,
               "inputs": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": dims}]}
    before = counts()
    assert_refused(api(deployer).post("/api/v1/models/", payload, format="json"), "inputs[0].dims")
    assert counts() == before


def test_the_largest_int64_dim_is_accepted(api, world, deployer):
    payload = {"team": "vision", "name": "m2", "backend": "python", "outputs": TENSORS_OUT,
               "inputs": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1, 2**63 - 1]}]}
    response = api(deployer).post("/api/v1/models/", payload, format="json")
    assert response.status_code == 201, response.json()


# -- NUL (and other text PostgreSQL cannot store) -------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/pools/%00/"),
    ("delete", "/api/v1/pools/%00/"),
    ("get", "/api/v1/teams/%00/"),
    ("get", "/api/v1/teams/vision%00/members/"),
    ("get", "/api/v1/quotas/%00/"),
    ("put", "/api/v1/quotas/%00/"),
    ("get", "/api/v1/models/MODEL/labels/%00/"),
    ("delete", "/api/v1/models/MODEL/labels/%00/"),
    ("put", "/api/v1/models/MODEL/labels/st%00able/"),
    ("patch", "/api/v1/teams/vision/members/%00/"),
    ("delete", "/api/v1/teams/vision/members/dana%00/"),
])
def test_nul_in_the_path_is_refused(api, world, platform_admin, method, path):
    before = counts()
    response = getattr(api(platform_admin), method)(path.replace("MODEL", str(world["model"].pk)), {}, format="json")
    assert_refused(response, "path")
    assert counts() == before


@pytest.mark.parametrize("path, field", [
    ("/api/v1/models/MODEL/label-history/?label=%00", "label"),
    ("/api/v1/resolve/?team=vision&model=fraud-scorer&label=sta%00ble", "label"),
    ("/api/v1/models/?q=%00", "q"),
    ("/api/v1/servers/?name=a%00", "name"),
    ("/api/v1/placements/?server=%00", "server"),
    ("/api/v1/audit/events/?actor=%00", "actor"),
])
def test_nul_in_the_query_is_400_naming_the_parameter(api, world, platform_admin, path, field):
    assert_refused(api(platform_admin).get(path.replace("MODEL", str(world["model"].pk))), field)


def test_an_encoded_percent_zero_zero_is_fine(api, world, deployer):
    response = api(deployer).get("/api/v1/models/?q=%2500")
    assert response.status_code == 200 and response.json()["count"] == 0


def test_nul_in_a_header_is_400(api, world):
    response = api().get("/api/v1/models/", HTTP_AUTHORIZATION="Bearer sy_ab\x00cd_secret")
    assert_refused(response, "Authorization")


def test_nul_in_a_ui_form_or_path_is_400_not_500(client, world, deployer):
    client.force_login(deployer)
    before = counts()
    response = client.post(f"/models/{world['model'].pk}/labels/delete/", {"name": "st\x00able", "reason": "r"})
    assert response.status_code == 400
    response = client.post("/team/vision/members/d%00na/remove/")
    assert response.status_code == 400
    assert counts() == before


@pytest.mark.parametrize("text, what", [("a\u0000b", "NUL"), ("a\ud800b", "surrogate")])
def test_unstorable_text_inside_json_is_400_naming_the_path(api, world, deployer, platform_admin, text, what):
    import json

    model, admin = world["model"], world["admin"]
    cases = [
        (deployer, "post", f"/api/v1/models/{model.pk}/versions/",
         {"version": 3, "source_uri": "s3://b/p/", "metadata": {"note": text}}, "metadata.note"),
        (deployer, "post", f"/api/v1/models/{model.pk}/versions/",
         {"version": 3, "source_uri": "s3://b/p/", "metadata": {text: 1}}, "metadata"),
        (admin, "post", f"/api/v1/models/{model.pk}/serving-configs/",
         {"spec": {"model_warmup": [{"name": text, "batch_size": 1, "inputs": {}}]}, "reason": "warm"}, "spec.model_warmup[0].name"),
        (platform_admin, "patch", f"/api/v1/servers/{world['server'].pk}/", {"labels": {"zone": text}}, "labels.zone"),
        (deployer, "put", f"/api/v1/models/{model.pk}/labels/stable/", {"version": 1, "reason": text}, "reason"),
    ]
    before = counts()
    for user, method, url, payload, field in cases:
        raw = json.dumps(payload)  # escapes as \u0000 and \ud800, as a client would send them
        body = assert_refused(send_json(api(user), method, url, raw), field)
        assert what in body["detail"] or "null" in body["detail"].lower()
    assert counts() == before


def test_unstorable_text_in_a_multipart_json_field_is_400(api, world, deployer):
    upload = io.BytesIO(b"print(1)")
    upload.name = "model.py"
    before = counts()
    response = api(deployer).post(f"/api/v1/models/{world['model'].pk}/versions/",
                                  {"version": "3", "files": [upload], "metadata": '{"note": "a\\u0000b"}'})
    assert_refused(response, "metadata")
    assert counts() == before


@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_numbers_json_cannot_store_are_400(api, world, deployer, number):
    raw = '{"version": 3, "source_uri": "s3://b/p/", "metadata": {"x": %s}}' % number
    before = counts()
    assert_refused(send_json(api(deployer), "post", f"/api/v1/models/{world['model'].pk}/versions/", raw), "metadata.x")
    assert counts() == before


def test_nan_in_a_multipart_json_field_is_400(api, world, deployer):
    upload = io.BytesIO(b"print(1)")
    upload.name = "model.py"
    response = api(deployer).post(f"/api/v1/models/{world['model'].pk}/versions/",
                                  {"version": "3", "files": [upload], "metadata": '{"x": NaN}'})
    assert_refused(response, "metadata")


# -- null where the column is NOT NULL ------------------------------------------------------

def test_multipart_null_labels_on_a_server_is_400(api, world, platform_admin):
    server = world["server"]
    before = counts()
    response = api(platform_admin).patch(f"/api/v1/servers/{server.pk}/", {"labels": "null"}, format="multipart")
    assert_refused(response, "labels")
    response = api(platform_admin).post("/api/v1/servers/", {"name": "triton-9", "pool": "cpu", "http_url": "http://127.0.0.1:1",
                                                              "labels": "null"}, format="multipart")
    body = assert_refused(response, "labels")
    assert "triton-9" not in body["detail"]
    assert counts() == before


def test_json_null_labels_on_a_server_is_400(api, world, platform_admin):
    before = counts()
    response = api(platform_admin).patch(f"/api/v1/servers/{world['server'].pk}/", {"labels": None}, format="json")
    assert_refused(response, "labels")
    assert counts() == before


# -- oversized bodies -----------------------------------------------------------------------

def test_a_five_megabyte_json_body_is_a_json_413(api, world, deployer):
    raw = '{"team": "vision", "name": "m2", "backend": "python", "inputs": [], "outputs": [], "description": "%s"}' % ("x" * 5_000_000)
    before = counts()
    response = send_json(api(deployer), "post", "/api/v1/models/", raw)
    assert_refused(response, "body", status=413)
    assert counts() == before


def test_too_many_form_fields_is_a_json_4xx(api, world, deployer):
    response = api(deployer).post(f"/api/v1/models/{world['model'].pk}/versions/",
                                  {f"f{i}": "x" for i in range(1200)}, format="multipart")
    assert_refused(response, "body", status=413)


def test_uploads_above_the_json_limit_still_register(api, world, deployer, s3):
    upload = io.BytesIO(b"#" * 3_000_000)
    upload.name = "model.py"
    response = api(deployer).post(f"/api/v1/models/{world['model'].pk}/versions/", {"version": "3", "files": [upload]})
    assert response.status_code == 201, response.json()
    assert response.json()["size_bytes"] == 3_000_000


# -- strict types in JSON bodies ------------------------------------------------------------

@pytest.mark.parametrize("value", ["7", 7.0, True, "seven", None, [7]])
def test_version_must_be_a_json_integer(api, world, deployer, value):
    before = counts()
    url = f"/api/v1/models/{world['model'].pk}/versions/"
    assert_refused(api(deployer).post(url, {"version": value, "source_uri": "s3://b/p/"}, format="json"), "version")
    label = f"/api/v1/models/{world['model'].pk}/labels/stable/"
    assert_refused(api(deployer).put(label, {"version": value, "reason": "r"}, format="json"), "version")
    assert counts() == before


MODEL = object()  # replaced by the model's id


@pytest.mark.parametrize("method, path, payload, field, who", [
    ("put", "/api/v1/quotas/vision/", {"gpus": "5"}, "gpus", "platform_admin"),
    ("put", "/api/v1/quotas/vision/", {"gpus": 5.0}, "gpus", "platform_admin"),
    ("put", "/api/v1/quotas/vision/", {"gpus": True}, "gpus", "platform_admin"),
    ("put", "/api/v1/quotas/vision/", {"gpus": 5, "reason": 7}, "reason", "platform_admin"),
    ("post", "/api/v1/models/", {"team": "vision", "name": "m2", "backend": "python", "inputs": TENSORS_IN,
                                 "outputs": TENSORS_OUT, "max_batch_size": "8"}, "max_batch_size", "deployer"),
    ("post", "/api/v1/models/", {"team": "vision", "name": 123, "backend": "python", "inputs": TENSORS_IN,
                                 "outputs": TENSORS_OUT}, "name", "deployer"),
    ("post", "/api/v1/placements/", {"model": "MODEL", "versions": [1], "servers": ["triton-0"]}, "model", "deployer"),
    ("post", "/api/v1/placements/", {"model": MODEL, "versions": ["1"], "servers": ["triton-0"]}, "versions", "deployer"),
    ("post", "/api/v1/placements/", {"model": MODEL, "versions": [1.0], "servers": ["triton-0"]}, "versions", "deployer"),
    ("post", "/api/v1/placements/", {"model": MODEL, "versions": [1], "servers": ["triton-0"], "config_revision": "1"},
     "config_revision", "deployer"),
    ("patch", "/api/v1/servers/SERVER/", {"gpu_count": "4"}, "gpu_count", "platform_admin"),
    ("patch", "/api/v1/servers/SERVER/", {"gpu_type": 100}, "gpu_type", "platform_admin"),
    ("post", "/api/v1/tokens/", {"name": "ci", "scopes": ["read"], "expires_in_days": "30"}, "expires_in_days", "deployer"),
    ("post", "/api/v1/tokens/", {"name": 5, "scopes": ["read"]}, "name", "deployer"),
])
def test_json_bodies_are_strict_about_types(api, world, deployer, platform_admin, method, path, payload, field, who):
    user = {"deployer": deployer, "platform_admin": platform_admin}[who]
    model_id = world["model"].pk
    payload = {k: model_id if v is MODEL else str(model_id) if v == "MODEL" else v for k, v in payload.items()}
    before = counts()
    response = getattr(api(user), method)(path.replace("SERVER", str(world["server"].pk)), payload, format="json")
    assert_refused(response, field)
    assert counts() == before


def test_multipart_uploads_still_send_the_version_as_text(api, world, deployer, s3):
    upload = io.BytesIO(b"print(1)")
    upload.name = "model.py"
    response = api(deployer).post(f"/api/v1/models/{world['model'].pk}/versions/",
                                  {"version": "3", "files": [upload], "metadata": '{"git": "abc"}'})
    assert response.status_code == 201, response.json()
    assert (response.json()["version"], response.json()["metadata"]) == (3, {"git": "abc"})


@pytest.mark.parametrize("value", ["3.0", "3 ", "+3", "0x3", "1e3", "99999999999999999999"])
def test_multipart_version_text_must_be_digits_in_range(api, world, deployer, value):
    upload = io.BytesIO(b"print(1)")
    upload.name = "model.py"
    response = api(deployer).post(f"/api/v1/models/{world['model'].pk}/versions/", {"version": value, "files": [upload]})
    assert_refused(response, "version")


def _input_serializers():
    from django.urls import get_resolver

    get_resolver().url_patterns  # imports every api module

    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    return sorted(set(walk(common_api.StrictSerializer)), key=lambda c: c.__qualname__)


def _lax_fields():
    strict = {
        serializers.IntegerField: "StrictIntegerField",
        serializers.CharField: "StrictCharField",
        serializers.ChoiceField: "StrictChoiceField",
        serializers.BooleanField: "StrictBooleanField",
        serializers.JSONField: "StrictJSONField",
        serializers.FloatField: "StrictNumberField",
        serializers.DecimalField: None,
    }
    return {base: getattr(common_api, name, None) if name else None for base, name in strict.items()}


def test_every_input_serializer_uses_strict_fields():
    """DRF's fields coerce "7" and 7.0 to 7, 7 to "7" and "yes" to true; input serializers use ours."""
    found = _input_serializers()
    assert len(found) >= 15
    lax = []
    for cls in found:
        for name, field in cls().fields.items():
            for f in (field, getattr(field, "child", None)):
                for base, strict in _lax_fields().items():
                    if isinstance(f, base) and not (strict and isinstance(f, strict)):
                        lax.append(f"{cls.__qualname__}.{name}: {type(f).__name__}")
    assert lax == []


# -- other instances of the same classes -----------------------------------------------------

def test_too_many_files_is_a_json_413(api, world, deployer):
    files = []
    for i in range(101):
        upload = io.BytesIO(b"x")
        upload.name = f"f{i}.txt"
        files.append(upload)
    response = api(deployer).post(f"/api/v1/models/{world['model'].pk}/versions/", {"version": "3", "files": files})
    body = assert_refused(response, "body", status=413)
    assert "archive" in body["detail"]


@pytest.mark.parametrize("value", ["\u00b2", "\u0661", "1.0"])
def test_revision_numbers_in_queries_are_ascii_digits(api, client, world, deployer, value):
    model = world["model"].pk
    assert_refused(api(deployer).get(f"/api/v1/models/{model}/serving-configs/diff/", {"from": value, "to": "1"}), "from")
    assert_refused(api(deployer).get(f"/api/v1/models/{model}/serving-configs/1/", {"versions": value}), "versions")
    client.force_login(deployer)
    response = client.get(f"/models/{model}/serving-config/diff/", {"from": value, "to": "1"})
    assert response.status_code == 200


def test_audit_until_the_last_representable_day_is_not_a_500(api, client, world, platform_admin):
    response = api(platform_admin).get("/api/v1/audit/events/", {"until": "9999-12-31"})
    assert response.status_code == 200 and response.json()["count"] == AuditEvent.objects.count() > 0
    client.force_login(platform_admin)
    assert client.get("/audit/", {"until": "9999-12-31"}).status_code == 200


def test_a_nul_cookie_is_400_not_500(client, world):
    # a quoted cookie's octal escape decodes to NUL; the session store then looks it up
    response = client.get("/api/v1/models/", HTTP_COOKIE='sessionid="\\000abcdefghijk"')
    assert_refused(response, "Cookie")


def test_only_unique_clashes_become_a_conflict(world, platform_admin):
    """A NOT NULL violation used to answer 409 "a server named ... already exists"."""
    from django.db import IntegrityError

    from controlplane.audit.context import Actor
    from controlplane.audit.services import create_audited
    from controlplane.common.errors import Conflict

    clash = Conflict("name", "taken")
    actor = Actor(user=platform_admin, source="api")
    with pytest.raises(IntegrityError):
        create_audited(Pool(name="gpu", description=None), actor=actor, action="pool.create", fields=["name"], duplicate=clash)
    with pytest.raises(Conflict):
        create_audited(Pool(name="cpu"), actor=actor, action="pool.create", fields=["name"], duplicate=clash)
    assert Pool.objects.count() == 1 and not AuditEvent.objects.filter(action="pool.create").exists()
