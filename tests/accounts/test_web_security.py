import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError

from controlplane.audit.models import AuditEvent
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def test_no_secret_reaches_logs_or_audit_records(api, client, deployer, caplog):
    cache.clear()
    caplog.set_level(logging.DEBUG)
    created = api(deployer).post("/api/v1/tokens/", {"name": "ci", "scopes": ["read"]}, format="json").json()
    secret = created["secret"]
    bearer = api()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    bearer.get("/api/v1/models/")
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}x")
    assert bearer.get("/api/v1/models/").status_code == 401
    client.post("/login/", {"username": "dana", "password": "not-" + PASSWORD})
    client.post("/login/", {"username": "dana", "password": PASSWORD})
    logged = caplog.text
    audited = " ".join(str(row) for row in AuditEvent.objects.values_list("before", "after", "reason", "object_repr"))
    for needle in (secret, secret.rsplit("_", 1)[1], PASSWORD):
        assert needle not in logged and needle not in audited
    assert AuditEvent.objects.filter(action="token.create").exists()


def _settings_in_subprocess(**env) -> str:
    code = "import django.conf as c; from controlplane import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    full_env = {**os.environ, "SWITCHYARD_DEBUG": "true", **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def test_secure_cookies_are_switched_on_by_the_environment():
    assert _settings_in_subprocess(SWITCHYARD_SECURE_COOKIES="false") == "False False"
    assert _settings_in_subprocess(SWITCHYARD_SECURE_COOKIES="true") == "True True"


def test_production_needs_a_secret_key():
    env = {**os.environ, "SWITCHYARD_DEBUG": "false", "SWITCHYARD_SECRET_KEY": ""}
    result = subprocess.run([sys.executable, "-c", "import controlplane.settings"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "SWITCHYARD_SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("password", ["password", "12345678", "dana"])
def test_djangos_password_validators_are_on(deployer, password):
    with pytest.raises(ValidationError):
        validate_password(password, user=deployer)
