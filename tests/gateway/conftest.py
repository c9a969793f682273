"""The gateway's tests need neither Django nor a database: the gateway imports neither.

tests/conftest.py sets up the test database for every session (to close stray connections at
teardown) and touches Django's settings for every test; neither applies here, so both are
replaced with no-ops for this directory. A gateway-only run then starts in well under a second
and never touches the shared test database.
"""
import pytest


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections_at_teardown():
    yield


@pytest.fixture(autouse=True)
def fast_password_hashing():
    pass
