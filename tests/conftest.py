"""Shared fixtures. The people follow healthchecks' habit: fixed users with fixed roles.

- platform_admin: is_staff, manages servers and pools
- deployer: deployer in team "vision"
- viewer: viewer in team "vision"
- outsider: deployer in team "speech", must never see vision's objects
"""
import os

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from controlplane.accounts.models import Membership, Role, Team
from controlplane.devstack import s3 as devstack_s3

# boto3 reads these when a client is made; moto accepts any credentials.
os.environ.setdefault("AWS_ACCESS_KEY_ID", devstack_s3.ACCESS_KEY)
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", devstack_s3.SECRET_KEY)
os.environ.setdefault("AWS_DEFAULT_REGION", devstack_s3.REGION)

pytest_plugins = ["tests.fleet_fixtures"]

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections_at_teardown(django_db_setup, django_db_blocker):
    """Threads in worker and concurrency tests may leave a connection open; dropping the test
    database at the end of the session would then fail. Close them first."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2's million rounds cost ~0.4 s a user; tests check logic, not hashing strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _user(username, **extra):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)


@pytest.fixture
def team(db):
    return Team.objects.create(slug="vision", display_name="Vision")


@pytest.fixture
def other_team(db):
    return Team.objects.create(slug="speech", display_name="Speech")


@pytest.fixture
def platform_admin(db):
    return _user("pat", is_staff=True)


@pytest.fixture
def deployer(team):
    user = _user("dana")
    Membership.objects.create(user=user, team=team, role=Role.DEPLOYER)
    return user


@pytest.fixture
def viewer(team):
    user = _user("vic")
    Membership.objects.create(user=user, team=team, role=Role.VIEWER)
    return user


@pytest.fixture
def team_admin(team):
    user = _user("ada")
    Membership.objects.create(user=user, team=team, role=Role.ADMIN)
    return user


@pytest.fixture
def outsider(other_team):
    user = _user("otto")
    Membership.objects.create(user=user, team=other_team, role=Role.DEPLOYER)
    return user


@pytest.fixture
def api():
    """``api(user)`` returns an APIClient signed in with a real session."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture
def s3(settings, s3_server):
    """Point Django's artifact storage at the session's moto S3 server (the fleet's repository)."""
    from tests.fleet_fixtures import TEST_BUCKET, TEST_PREFIX

    settings.SWITCHYARD_S3_ENDPOINT_URL = s3_server.endpoint_url
    settings.SWITCHYARD_S3_BUCKET = TEST_BUCKET
    settings.SWITCHYARD_S3_PREFIX = TEST_PREFIX
    client = s3_server.client()
    devstack_s3.ensure_bucket(client, TEST_BUCKET)
    _empty_bucket(client, TEST_BUCKET)
    return client


def _empty_bucket(client, bucket):
    """Each test starts from an empty repository, keeping only the placeholder Triton needs."""
    from controlplane.devstack.triton import PLACEHOLDER

    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", []) if not o["Key"].endswith(PLACEHOLDER)]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


TENSORS_IN = [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}]
TENSORS_OUT = [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}, {"name": "VERSION", "data_type": "TYPE_INT32", "dims": [1]}]


@pytest.fixture
def model_payload():
    def make(**overrides):
        payload = {
            "team": "vision",
            "name": "fraud-scorer",
            "backend": "python",
            "max_batch_size": 8,
            "inputs": TENSORS_IN,
            "outputs": TENSORS_OUT,
        }
        payload.update(overrides)
        return payload

    return make


@pytest.fixture
def model(team, deployer):
    from controlplane.audit.context import Actor
    from controlplane.registry.services import model_create

    return model_create(
        actor=Actor(user=deployer, source="api"),
        team=team,
        name="fraud-scorer",
        backend="python",
        max_batch_size=8,
        inputs=TENSORS_IN,
        outputs=TENSORS_OUT,
    )
