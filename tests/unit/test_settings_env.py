import pytest
from django.core.exceptions import ImproperlyConfigured

from controlplane.env import Env


def test_strict_bool(monkeypatch):
    env = Env()
    monkeypatch.setenv("SY_FLAG", "yes")
    assert env.strict_bool("SY_FLAG", default=False) is True
    monkeypatch.setenv("SY_FLAG", "off")
    assert env.strict_bool("SY_FLAG", default=True) is False
    monkeypatch.setenv("SY_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SY_FLAG"):
        env.strict_bool("SY_FLAG", default=False)


def test_numbers_fail_loudly(monkeypatch):
    env = Env()
    monkeypatch.setenv("SY_N", "ten")
    with pytest.raises(ImproperlyConfigured, match="SY_N"):
        env.positive_int("SY_N", default=1)
    monkeypatch.setenv("SY_N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env.positive_int("SY_N", default=1)
    monkeypatch.setenv("SY_T", "-1")
    with pytest.raises(ImproperlyConfigured):
        env.positive_float("SY_T", default=1.0)


def test_names_read_are_recorded():
    assert {"DATABASE_URL", "SWITCHYARD_S3_BUCKET", "SWITCHYARD_SECRET_KEY"} <= Env.names
