"""Registering models and versions from the UI: the forms feed the API's services, a refusal sits
next to its field with the status the API gives it, and nothing is written unless all is well."""
import html as htmllib
import io
import re
import tarfile

import pytest
from django.test import Client

from controlplane.accounts.models import Membership, Role
from controlplane.audit.models import AuditEvent
from controlplane.registry.forms import parse_dims
from controlplane.registry.models import Model, ModelVersion
from tests.conftest import _user
from tests.fleet_fixtures import TEST_BUCKET


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def model_post(**overrides) -> dict:
    data = {
        "team": "vision", "name": "resnet", "backend": "onnxruntime", "max_batch_size": "8", "description": "images",
        "inputs-0-name": "IMAGE", "inputs-0-data_type": "TYPE_UINT8", "inputs-0-dims": "3, -1, -1",
        "inputs-3-name": "SCALE", "inputs-3-data_type": "TYPE_FP32", "inputs-3-dims": "1",
        "inputs-5-name": "", "inputs-5-data_type": "TYPE_FP32", "inputs-5-dims": "",  # a blank row is dropped
        "outputs-0-name": "PROBS", "outputs-0-data_type": "TYPE_FP32", "outputs-0-dims": "[1000]",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def error_next_to(html: str, input_name: str) -> str:
    """The error text in the element described by the named input's aria-describedby."""
    tag = re.search(rf'<(?:input|select|textarea)[^>]*name="{re.escape(input_name)}"[^>]*>', html)
    assert tag, f"no input {input_name}"
    described = re.search(r'aria-describedby="([^"]+)"', tag.group(0))
    assert described, f"{input_name} has no error: {tag.group(0)}"
    texts = [re.search(rf'id="{i}"[^>]*>([^<]*)<', html) for i in described.group(1).split()]
    errors = [t.group(1).strip() for t in texts if t and "error" in t.group(0)]
    assert errors, f"{input_name} is described by no error"
    return htmllib.unescape(" ".join(errors))


def editor_error(html: str, field: str) -> str:
    """The error of a tensor editor as a whole (inputs or outputs)."""
    found = re.search(rf'id="id_{field}_error">([^<]*)<', html)
    return htmllib.unescape(found.group(1)) if found else ""


def test_parse_dims():
    assert parse_dims("3, -1, -1") == [3, -1, -1]
    assert parse_dims("[1000]") == [1000]
    assert parse_dims("  ") == []
    assert parse_dims("4, x") == [4, "x"]  # left for the service to name


# Models


def test_a_deployer_registers_a_model_with_the_tensor_editor(deployer):
    response = client_for(deployer).post("/models/new/", model_post())
    model = Model.objects.get(name="resnet")
    assert response.status_code == 302 and response["Location"] == f"/models/{model.pk}/versions/new/"
    assert model.team.slug == "vision" and model.backend == "onnxruntime" and model.max_batch_size == 8
    assert model.inputs == [
        {"name": "IMAGE", "data_type": "TYPE_UINT8", "dims": [3, -1, -1]},
        {"name": "SCALE", "data_type": "TYPE_FP32", "dims": [1]},
    ]
    assert model.outputs == [{"name": "PROBS", "data_type": "TYPE_FP32", "dims": [1000]}]
    event = AuditEvent.objects.get(action="model.create")
    assert (event.source, event.actor_name, event.object_id) == ("ui", "dana", str(model.pk))


def test_the_register_page_offers_only_teams_where_one_deploys(deployer, other_team):
    Membership.objects.create(user=deployer, team=other_team, role=Role.VIEWER)
    html = client_for(deployer).get("/models/new/").content.decode()
    assert re.findall(r'<option value="([^"]+)"', html.split('name="team"')[1].split("</select>")[0]) == ["vision"]
    assert 'name="inputs-0-dims"' in html and 'data-tensor-template' in html


def test_bad_dims_come_back_next_to_their_cell_and_nothing_is_written(deployer):
    response = client_for(deployer).post("/models/new/", model_post(**{"inputs-3-dims": "1, 0"}))
    assert response.status_code == 400
    html = response.content.decode()
    # the second row (posted as 3) is tensor 1 of the list the service checked
    assert "positive integer" in error_next_to(html, "inputs-1-dims")
    assert 'value="1, 0"' in html and 'value="IMAGE"' in html  # what was typed is kept
    assert editor_error(html, "inputs") == "Fix the marked tensors."  # on the editor as a whole
    assert 'name="inputs-0-dims" value="3, -1, -1" aria-label="Input dims" placeholder="-1, 224, 224" autocomplete="off" size="14">' in html
    assert not Model.objects.exists() and not AuditEvent.objects.filter(action="model.create").exists()


def test_a_non_integer_dim_and_a_bad_name_get_the_apis_messages(deployer, api):
    response = client_for(deployer).post("/models/new/", model_post(**{"outputs-0-dims": "10, ten", "outputs-0-name": "bad name"}))
    assert response.status_code == 400
    html = response.content.decode()
    api_answer = api(deployer).post("/api/v1/models/", {
        "team": "vision", "name": "resnet", "backend": "onnxruntime", "inputs": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
        "outputs": [{"name": "bad name", "data_type": "TYPE_FP32", "dims": [10, "ten"]}]}, format="json").json()["fields"]
    assert error_next_to(html, "outputs-0-dims") == api_answer["outputs[0].dims"][0]
    assert error_next_to(html, "outputs-0-name") == api_answer["outputs[0].name"][0]
    assert not Model.objects.exists()


def test_no_tensors_and_a_bad_name_are_field_errors(deployer):
    data = model_post(name="Not A DNS Name")
    data = {k: v for k, v in data.items() if not k.startswith("inputs-")}
    response = client_for(deployer).post("/models/new/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "non-empty list of tensors" in editor_error(html, "inputs")
    assert error_next_to(html, "name")
    assert not Model.objects.exists()


def test_a_foreign_team_is_refused_as_the_api_refuses_it(deployer, other_team):
    response = client_for(deployer).post("/models/new/", model_post(team="speech"))
    assert response.status_code == 400
    assert "No team named 'speech' among your teams." in error_next_to(response.content.decode(), "team")
    assert not Model.objects.exists()


def test_a_duplicate_name_is_a_409_next_to_the_name(deployer, model):
    response = client_for(deployer).post("/models/new/", model_post(name="fraud-scorer"))
    assert response.status_code == 409
    assert "already has a model named fraud-scorer" in error_next_to(response.content.decode(), "name")
    assert Model.objects.count() == 1


def test_viewers_cannot_register_models(viewer):
    client = client_for(viewer)
    page = client.get("/models/new/")
    assert page.status_code == 403 and "deployer role" in page.content.decode()
    assert "Register a model" not in client.get("/models/").content.decode()
    response = client.post("/models/new/", model_post())
    assert response.status_code == 403
    assert "needs the deployer role" in response.content.decode()
    assert not Model.objects.exists() and not AuditEvent.objects.exists()


# Versions


def _file(name: str, data: bytes):
    f = io.BytesIO(data)
    f.name = name
    return f


def _tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    buf.name = "v3.tar.gz"
    return buf


def test_the_version_page_names_the_staging_area_and_the_next_number(deployer, model, s3):
    html = client_for(deployer).get(f"/models/{model.pk}/versions/new/").content.decode()
    assert f"s3://{TEST_BUCKET}/staging/vision/" in html
    assert re.search(r'name="version" value="1"', html)
    assert "model.py" in html  # the python backend's required file


def test_upload_an_archive(deployer, model, s3):
    response = client_for(deployer).post(
        f"/models/{model.pk}/versions/upload/",
        {"version": "3", "archive": _tar({"model.py": b"v3", "assets/labels.txt": b"a\nb"}), "metadata": '{"git": "abc"}'},
    )
    assert response.status_code == 302 and response["Location"] == f"/models/{model.pk}/#versions"
    version = ModelVersion.objects.get(model=model, version=3)
    assert version.metadata == {"git": "abc"} and {f["path"] for f in version.files} == {"model.py", "assets/labels.txt"}
    assert s3.get_object(Bucket=TEST_BUCKET, Key="repo/vision.fraud-scorer/3/assets/labels.txt")["Body"].read() == b"a\nb"
    assert AuditEvent.objects.get(action="version.register").source == "ui"


def test_the_upload_script_gets_json_with_where_to_go(deployer, model, s3):
    client = client_for(deployer)
    response = client.post(f"/models/{model.pk}/versions/upload/", {"version": "1", "files": [_file("model.py", b"v1")]},
                           headers={"X-Requested-With": "XMLHttpRequest"})
    assert response.status_code == 201 and response.json() == {"location": f"/models/{model.pk}/#versions"}
    again = client.post(f"/models/{model.pk}/versions/upload/", {"version": "1", "files": [_file("model.py", b"v1")]},
                        headers={"X-Requested-With": "XMLHttpRequest"})
    assert again.status_code == 200  # same content: nothing new, as in the API
    page = client.get(f"/models/{model.pk}/").content.decode()
    assert "already holds exactly this" in page and "Registered vision/fraud-scorer v1." in page
    assert AuditEvent.objects.filter(action="version.register").count() == 1


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"version": "2"}, "files", "Upload at least one file."),
        ({"version": "2", "files": [_file("weights.bin", b"x")]}, "files", "must contain a model.py file"),
        ({"version": "2", "archive": _file("v2.tar.gz", b"not an archive")}, "archive", "is not a readable"),
        ({"version": "0", "files": [_file("model.py", b"x")]}, "version", "from 1 to"),
        ({"version": "two", "files": [_file("model.py", b"x")]}, "version", "Enter a whole number."),
        ({"version": "2", "files": [_file("model.py", b"x")], "metadata": "[1]"}, "metadata", "must be a JSON object"),
        ({"version": "2", "files": [_file("model.py", b"x")], "metadata": "{"}, "metadata", "Not valid JSON"),
    ],
)
def test_upload_errors_sit_next_to_their_field(deployer, model, s3, data, field, message):
    response = client_for(deployer).post(f"/models/{model.pk}/versions/upload/", data)
    assert response.status_code == 400
    assert message in error_next_to(response.content.decode(), field)
    assert not ModelVersion.objects.exists() and not AuditEvent.objects.filter(action="version.register").exists()


def test_an_upload_over_the_limit_is_refused_before_it_is_read(deployer, model, s3, settings):
    settings.SWITCHYARD_MAX_UPLOAD_BYTES = 1000
    response = client_for(deployer).post(f"/models/{model.pk}/versions/upload/", {"version": "2", "files": [_file("model.py", b"x" * 2000)]})
    assert response.status_code == 413
    assert "the limit is 1000" in error_next_to(response.content.decode(), "files")
    assert not ModelVersion.objects.exists()


def test_a_version_registers_from_the_staging_area(deployer, model, s3):
    s3.put_object(Bucket=TEST_BUCKET, Key="staging/vision/fraud-scorer/build-7/model.py", Body=b"v7")
    response = client_for(deployer).post(
        f"/models/{model.pk}/versions/from-s3/", {"version": "7", "source_uri": f"s3://{TEST_BUCKET}/staging/vision/fraud-scorer/build-7/"}
    )
    assert response.status_code == 302
    version = ModelVersion.objects.get(model=model, version=7)
    assert version.source_uri == f"s3://{TEST_BUCKET}/staging/vision/fraud-scorer/build-7/"
    assert s3.get_object(Bucket=TEST_BUCKET, Key="repo/vision.fraud-scorer/7/model.py")["Body"].read() == b"v7"


@pytest.mark.parametrize("uri", ["s3://elsewhere/x/", "https://example.com/x", "s3://switchyard-test/repo/vision.fraud-scorer/1/",
                                 "s3://switchyard-test/staging/speech/x/"])
def test_a_source_outside_the_staging_area_is_refused_next_to_the_field(deployer, model, s3, uri, api):
    uri = uri.replace("switchyard-test", TEST_BUCKET)
    response = client_for(deployer).post(f"/models/{model.pk}/versions/from-s3/", {"version": "2", "source_uri": uri})
    assert response.status_code == 400
    api_message = api(deployer).post(f"/api/v1/models/{model.pk}/versions/", {"version": 2, "source_uri": uri},
                                     format="json").json()["fields"]["source_uri"][0]
    assert error_next_to(response.content.decode(), "source_uri") == api_message
    assert not ModelVersion.objects.exists()


def test_viewers_and_other_teams_cannot_register_versions(viewer, outsider, model, s3):
    as_viewer = client_for(viewer)
    assert "Register a version" not in as_viewer.get(f"/models/{model.pk}/").content.decode()
    assert as_viewer.get(f"/models/{model.pk}/versions/new/").status_code == 403
    refused = as_viewer.post(f"/models/{model.pk}/versions/upload/", {"version": "1", "files": [_file("model.py", b"v1")]})
    assert refused.status_code == 403 and "needs the deployer role" in refused.content.decode()
    as_outsider = client_for(outsider)
    assert as_outsider.get(f"/models/{model.pk}/versions/new/").status_code == 404
    assert as_outsider.post(f"/models/{model.pk}/versions/from-s3/", {"version": "1", "source_uri": "s3://x/y/"}).status_code == 404
    assert not ModelVersion.objects.exists() and not AuditEvent.objects.filter(action="version.register").exists()


def test_a_platform_admin_may_register_into_any_team(platform_admin, team, other_team):
    _user("nobody")
    response = client_for(platform_admin).post("/models/new/", model_post(team="speech"))
    assert response.status_code == 302
    assert Model.objects.get().team == other_team
