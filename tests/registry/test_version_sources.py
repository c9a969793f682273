"""Where a version may be registered from: only the team's own staging area (issue 7, item 1).

A source inside the managed repository would let a team copy another team's artifacts, and
errors about sources must not tell one team what another team has stored.
"""
import pytest

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.registry.models import ModelVersion
from controlplane.registry.services import model_create, version_register
from tests.conftest import TENSORS_IN, TENSORS_OUT
from tests.fleet_fixtures import TEST_BUCKET

SECRET = b"speech's private weights"


@pytest.fixture
def speech_model(other_team, outsider, s3):
    """Team speech has a registered model and a staged build; vision must reach neither."""
    actor = Actor(user=outsider, source="api")
    secret = model_create(actor=actor, team=other_team, name="secret-asr", backend="python", max_batch_size=0,
                          inputs=TENSORS_IN, outputs=TENSORS_OUT)
    version_register(actor=actor, model=secret, version=1, contents={"model.py": SECRET})
    s3.put_object(Bucket=TEST_BUCKET, Key="staging/speech/secret-asr/build-9/model.py", Body=SECRET)
    return secret


def register(api, user, model, source_uri):
    return api(user).post(f"/api/v1/models/{model.pk}/versions/", {"version": 5, "source_uri": source_uri}, format="json")


def assert_refused_without_writes(response, model):
    assert response.status_code == 400, response.json()
    assert list(response.json()["fields"]) == ["source_uri"]
    assert not ModelVersion.objects.filter(model=model).exists()
    assert not AuditEvent.objects.filter(action="version.register", team=model.team).exists()


@pytest.mark.parametrize(
    "path",
    [
        "repo/speech.secret-asr/1/",  # another team's registered version
        "repo/speech.secret-asr/",  # its version directories
        "repo/",  # the whole repository
        "staging/speech/secret-asr/build-9/",  # another team's staging area
        "staging/vision/../speech/secret-asr/build-9/",
        "staging/vision/./../speech/secret-asr/build-9/",
        "staging/vision//secret-asr/build-9/",
        "staging/vision/",  # the staging root itself is no version directory
        "staging/vision-extra/x/",  # a team whose slug starts with ours is not ours
        "staging/vision/x/?versionId=1",
    ],
)
def test_a_source_outside_the_teams_staging_area_is_refused(api, deployer, model, speech_model, path):
    response = register(api, deployer, model, f"s3://{TEST_BUCKET}/{path}")
    assert_refused_without_writes(response, model)
    body = str(response.json())
    assert "secret-asr" not in body and "speech" not in body and "sha256" not in body


def test_the_teams_own_repository_is_no_source_either(api, deployer, model, s3):
    register_from_upload = api(deployer).post(f"/api/v1/models/{model.pk}/versions/", {"version": 1, "files": [_file("model.py", b"v1")]})
    assert register_from_upload.status_code == 201
    response = register(api, deployer, model, f"s3://{TEST_BUCKET}/repo/vision.fraud-scorer/1/")
    assert response.status_code == 400 and "staging/vision/" in response.json()["detail"]
    assert list(ModelVersion.objects.filter(model=model).values_list("version", flat=True)) == [1]


def test_errors_do_not_tell_which_of_another_teams_objects_exist(api, deployer, model, speech_model):
    """The answer for another team's real model and for a model nobody has must be identical."""
    pairs = [
        ("repo/speech.secret-asr/1/", "repo/speech.no-such-model/1/"),
        ("repo/speech.secret-asr/", "repo/speech.no-such-model/"),
        ("staging/speech/secret-asr/build-9/", "staging/speech/nothing/here/"),
    ]
    for real, missing in pairs:
        a = register(api, deployer, model, f"s3://{TEST_BUCKET}/{real}")
        b = register(api, deployer, model, f"s3://{TEST_BUCKET}/{missing}")
        assert (a.status_code, a.json()) == (b.status_code, b.json())


def test_a_version_registers_from_the_teams_staging_area(api, deployer, model, s3):
    s3.put_object(Bucket=TEST_BUCKET, Key="staging/vision/fraud-scorer/build-3/model.py", Body=b"v3")
    response = register(api, deployer, model, f"s3://{TEST_BUCKET}/staging/vision/fraud-scorer/build-3/")
    assert response.status_code == 201, response.json()
    assert response.json()["artifact_uri"] == f"s3://{TEST_BUCKET}/repo/vision.fraud-scorer/5/"
    assert s3.get_object(Bucket=TEST_BUCKET, Key="repo/vision.fraud-scorer/5/model.py")["Body"].read() == b"v3"


def test_an_empty_staging_directory_names_only_our_own_area(api, deployer, model, s3):
    response = register(api, deployer, model, f"s3://{TEST_BUCKET}/staging/vision/fraud-scorer/missing/")
    assert_refused_without_writes(response, model)
    assert "staging/vision/fraud-scorer/missing/" in response.json()["detail"]


def test_overlapping_repository_and_staging_prefixes_fail_at_start_up():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for repo, staging in (("repo", "repo/staging"), ("builds", "builds"), ("a/b", "a")):
        env = {**os.environ, "SWITCHYARD_DEBUG": "true", "SWITCHYARD_S3_PREFIX": repo, "SWITCHYARD_S3_STAGING_PREFIX": staging}
        result = subprocess.run([sys.executable, "-c", "import controlplane.settings"], env=env, cwd=root, capture_output=True, text=True)
        assert result.returncode != 0 and "SWITCHYARD_S3_STAGING_PREFIX" in result.stderr


def _file(name, data):
    import io

    f = io.BytesIO(data)
    f.name = name
    return f
