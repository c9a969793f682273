import io
import tarfile

import pytest

from controlplane.audit.models import AuditEvent
from controlplane.registry.models import ModelVersion


def url(model):
    return f"/api/v1/models/{model.pk}/versions/"


def keys_under(s3, prefix):
    from tests.fleet_fixtures import TEST_BUCKET

    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix).get("Contents", []))


def read(s3, key):
    from tests.fleet_fixtures import TEST_BUCKET

    return s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()


def upload(name, data):
    f = io.BytesIO(data)
    f.name = name
    return f


def test_upload_registers_version_in_triton_layout(api, deployer, model, s3):
    response = api(deployer).post(url(model), {"version": 1, "files": [upload("model.py", b"print('v1')")], "metadata": '{"git": "abc"}'})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["artifact_uri"] == "s3://switchyard-test/repo/vision.fraud-scorer/1/"
    assert body["size_bytes"] == 11 and body["checksum"].startswith("sha256:") and body["metadata"] == {"git": "abc"}
    assert read(s3, "repo/vision.fraud-scorer/1/model.py") == b"print('v1')"
    event = AuditEvent.objects.get(action="version.register")
    assert event.after["checksum"] == body["checksum"] and event.actor_name == "dana"


def test_same_content_is_idempotent_and_different_content_is_409(api, deployer, model, s3):
    client = api(deployer)
    first = client.post(url(model), {"version": 2, "files": [upload("model.py", b"A")]})
    again = client.post(url(model), {"version": 2, "files": [upload("model.py", b"A")]})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    clash = client.post(url(model), {"version": 2, "files": [upload("model.py", b"B")]})
    assert clash.status_code == 409
    assert "version" in clash.json()["fields"] and "immutable" in clash.json()["detail"]
    assert read(s3, "repo/vision.fraud-scorer/2/model.py") == b"A"
    assert AuditEvent.objects.filter(action="version.register").count() == 1


def test_register_from_s3_uri_copies_into_repository(api, deployer, model, s3):
    from tests.fleet_fixtures import TEST_BUCKET

    s3.put_object(Bucket=TEST_BUCKET, Key="staging/vision/build-7/model.py", Body=b"code")
    s3.put_object(Bucket=TEST_BUCKET, Key="staging/vision/build-7/labels/classes.txt", Body=b"a\nb")
    response = api(deployer).post(url(model), {"version": 3, "source_uri": f"s3://{TEST_BUCKET}/staging/vision/build-7/"}, format="json")
    assert response.status_code == 201, response.json()
    assert keys_under(s3, "repo/vision.fraud-scorer/3/") == [
        "repo/vision.fraud-scorer/3/labels/classes.txt",
        "repo/vision.fraud-scorer/3/model.py",
    ]
    assert response.json()["source_uri"] == f"s3://{TEST_BUCKET}/staging/vision/build-7/"
    assert {f["path"] for f in response.json()["files"]} == {"model.py", "labels/classes.txt"}


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"version": 0}, "version"),
        ({"version": -3}, "version"),
        ({"version": "three"}, "version"),
        ({"version": 1.5}, "version"),
        ({"version": 1, "source_uri": "s3://someone-elses-bucket/m/1/"}, "source_uri"),
        ({"version": 1, "source_uri": "https://example.invalid/m/1/"}, "source_uri"),
        ({"version": 1, "source_uri": "s3://switchyard-test/staging/vision/empty/prefix/"}, "source_uri"),
        ({"version": 1, "source_uri": "s3://switchyard-test/staging/vision/no-model-file/"}, "source_uri"),
        ({"version": 1}, "source_uri"),
        ({"version": 1, "metadata": ["not", "an", "object"]}, "metadata"),
    ],
)
def test_bad_versions_are_400_without_writes(api, deployer, model, s3, payload, field):
    from tests.fleet_fixtures import TEST_BUCKET

    s3.put_object(Bucket=TEST_BUCKET, Key="staging/vision/no-model-file/model.onnx", Body=b"wrong backend")
    response = api(deployer).post(url(model), payload, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"], response.json()
    assert not ModelVersion.objects.exists() and not AuditEvent.objects.filter(action="version.register").exists()
    assert keys_under(s3, "repo/vision.fraud-scorer/1/") == []


def test_upload_missing_backend_file_is_400(api, deployer, model, s3):
    response = api(deployer).post(url(model), {"version": 1, "files": [upload("model.onnx", b"x")]})
    assert response.status_code == 400
    assert "model.py" in response.json()["fields"]["files"][0]


def test_archive_without_the_backend_file_is_reported_under_archive(api, deployer, model, s3):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.onnx")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    response = api(deployer).post(url(model), {"version": 1, "archive": upload("v1.tar.gz", buf.getvalue())})
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["archive"] and "model.py" in response.json()["fields"]["archive"][0]
    assert not ModelVersion.objects.exists()


def test_oversized_upload_is_413(api, deployer, model, s3, settings):
    settings.SWITCHYARD_MAX_UPLOAD_BYTES = 1000
    response = api(deployer).post(url(model), {"version": 1, "files": [upload("model.py", b"x" * 5000)]})
    assert response.status_code == 413
    assert "files" in response.json()["fields"] and "limit" in response.json()["detail"]
    assert not ModelVersion.objects.exists()


def test_archive_upload_for_a_savedmodel(api, deployer, team, s3, model_payload):
    client = api(deployer)
    tf = client.post("/api/v1/models/", model_payload(name="tf-ranker", backend="tensorflow"), format="json").json()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in {"model.savedmodel/saved_model.pb": b"pb", "model.savedmodel/variables/variables.index": b"ix"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    response = client.post(f"/api/v1/models/{tf['id']}/versions/", {"version": 1, "archive": upload("v1.tar.gz", buf.getvalue())})
    assert response.status_code == 201, response.json()
    assert keys_under(s3, "repo/vision.tf-ranker/1/") == [
        "repo/vision.tf-ranker/1/model.savedmodel/saved_model.pb",
        "repo/vision.tf-ranker/1/model.savedmodel/variables/variables.index",
    ]


def test_versions_of_other_teams_are_404(api, outsider, model, s3):
    assert api(outsider).get(url(model)).status_code == 404
    assert api(outsider).post(url(model), {"version": 1, "files": [upload("model.py", b"x")]}).status_code == 404
    assert not ModelVersion.objects.exists()


def test_viewer_cannot_register_versions(api, viewer, model, s3):
    response = api(viewer).post(url(model), {"version": 1, "files": [upload("model.py", b"x")]})
    assert response.status_code == 403
    assert not ModelVersion.objects.exists()
