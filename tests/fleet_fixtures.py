"""pytest plugin: moto's S3 server and real tritonserver processes for integration tests.

Enable with `pytest_plugins = ["tests.fleet_fixtures"]`. No Django here; Django settings can
point at `s3_server.endpoint_url` and TEST_BUCKET, which the fleet serves its models from.

Every process is stopped by its fixture's teardown, even when tests fail; devstack's atexit hook
and the SIGTERM handler below catch what an interrupted session leaves behind.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import controlplane.devstack as devstack
from controlplane.devstack.s3 import S3Server, ensure_bucket, start_s3_server
from controlplane.devstack.triton import TritonServer, start_triton_server

TEST_BUCKET = "switchyard-test"
TEST_PREFIX = "repo"  # models live at s3://<bucket>/repo/<model>/<version>/...
TEST_REPO_PREFIX = TEST_PREFIX
FLEET_SIZE = 2


def repository_uri(s3: S3Server, bucket: str = TEST_BUCKET, prefix: str = TEST_PREFIX) -> str:
    return f"s3://{s3.host_port}/{bucket}/{prefix}"


def pytest_configure(config) -> None:
    # A plain SIGTERM (CI timeouts) would skip atexit and orphan tritonserver processes.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL, None,
    ):
        signal.signal(signal.SIGTERM, _stop_everything_and_die)


def _stop_everything_and_die(signum, frame) -> None:
    devstack.stop_all()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


@pytest.fixture(scope="session")
def devstack_dir(tmp_path_factory) -> Path:
    """Where the servers' logs and work files go for this session."""
    return tmp_path_factory.mktemp("devstack")


@pytest.fixture(scope="session")
def s3_server(devstack_dir) -> Iterator[S3Server]:
    """A moto S3 server on loopback with TEST_BUCKET created."""
    server = start_s3_server(log_dir=devstack_dir)
    try:
        ensure_bucket(server.client(), TEST_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server):
    """A boto3 S3 client for s3_server."""
    return s3_server.client()


@pytest.fixture(scope="session")
def triton_repository(s3_server) -> str:
    """The fleet's model repository URI, s3://127.0.0.1:PORT/switchyard-test/repo."""
    return repository_uri(s3_server)


@pytest.fixture(scope="session")
def triton_fleet(s3_server, triton_repository, devstack_dir) -> Iterator[list[TritonServer]]:
    """FLEET_SIZE running tritonservers sharing the S3 repository, for the whole session.

    Keep them clean for the next test: use unique model names, unload what you load and wait
    until it is no longer UNLOADING (the server reports not ready meanwhile). A load that fails
    in the backend leaves the server not ready until that model loads successfully, so tests
    that expect load failures belong on `disposable_triton`.
    """
    servers: list[TritonServer] = []
    try:
        for i in range(FLEET_SIZE):
            servers.append(start_triton_server(
                name=f"fleet-{i}", repository=triton_repository, s3=s3_server,
                work_dir=devstack_dir / f"fleet-{i}",
            ))
        yield servers
    finally:
        _stop_all(servers)


@pytest.fixture
def disposable_triton(s3_server, triton_repository, devstack_dir, request) -> Iterator[TritonServer]:
    """One extra tritonserver on the same repository that a test may break, stop or restart."""
    work_dir = devstack_dir / f"disposable-{request.node.name}"[:120]
    server = start_triton_server(
        name="disposable", repository=triton_repository, s3=s3_server, work_dir=work_dir,
    )
    try:
        yield server
    finally:
        server.stop()


def _stop_all(servers: list[TritonServer]) -> None:
    # Each stop waits for Triton's exit timeout; stop them side by side.
    threads = [threading.Thread(target=s.stop) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
