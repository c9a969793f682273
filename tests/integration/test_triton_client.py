"""TritonClient against real tritonserver processes serving an S3 (moto) repository."""

import concurrent.futures
import json
import os
import re
import socket
import threading
import time
import uuid

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from controlplane.devstack.testmodels import python_model_files, test_model_config, upload_model_version
from controlplane.fleet.triton_client import (
    TritonClient,
    TritonRequestError,
    TritonUnavailable,
)
from tests.fleet_fixtures import TEST_BUCKET, TEST_PREFIX

pytestmark = pytest.mark.integration


def unique(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


def upload(s3_client, name, version, **model_options):
    return upload_model_version(
        s3_client, bucket=TEST_BUCKET, prefix=TEST_PREFIX, model_name=name, version=version,
        files=python_model_files(version=version, **model_options),
    )


def infer(server, model, *, rows=2, version=None):
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    with triton_http.InferenceServerClient(server.http_url.removeprefix("http://"), network_timeout=30) as c:
        tensor = triton_http.InferInput("INPUT0", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = c.infer(model, [tensor], model_version="" if version is None else str(version))
    return x, result.as_numpy("OUTPUT0"), result.as_numpy("VERSION")


def row(client, model, version=None):
    rows = [r for r in client.index() if r["name"] == model and (version is None or r["version"] == str(version))]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def client(triton_fleet):
    return TritonClient(triton_fleet[0].http_url, timeout=5, load_timeout=60)


@pytest.fixture
def deploy(s3_client, triton_fleet):
    """deploy(base, versions={1: {...model options}}, config_extra=...) uploads and loads a model."""
    loaded = []

    def _deploy(base, *, versions=None, config_extra=None, server=None):
        server = server or triton_fleet[0]
        name = unique(base)
        for version, options in (versions or {1: {}}).items():
            upload(s3_client, name, version, **options)
        c = TritonClient(server.http_url, timeout=5, load_timeout=60)
        c.load(name, config={**test_model_config(name), **(config_extra or {})})
        loaded.append((c, name))
        return name

    yield _deploy
    for c, name in loaded:
        unload_and_wait(c, name)


def unload_and_wait(c, name):
    # With strict readiness a server is not ready while any model is UNLOADING; settle the
    # shared fleet before the next test looks at it.
    try:
        c.unload(name)
        assert wait_for(lambda: all(r["state"] != "UNLOADING" for r in c.index() if r["name"] == name))
    except TritonUnavailable:
        pass


def test_health_and_metadata_of_every_fleet_server(triton_fleet):
    for server in triton_fleet:
        c = TritonClient(server.http_url)
        assert c.live() is True
        assert c.ready() is True
        meta = c.metadata()
        assert meta["name"] == server.name  # --id
        assert re.fullmatch(r"2\.\d+\.\d+", meta["version"])
        assert "model_repository" in meta["extensions"]


def test_load_from_s3_with_config_override_then_infer_and_unload(client, s3_client, triton_fleet):
    name = unique("team.scorer")  # a dot in the name is fine for Triton
    assert upload(s3_client, name, 1) == [f"{TEST_PREFIX}/{name}/1/model.py"]
    assert row(client, name) == {"name": name, "version": None, "state": None, "reason": None}

    seconds = client.load(name, config=test_model_config(name))

    assert 0 < seconds < 60
    assert row(client, name) == {"name": name, "version": "1", "state": "READY", "reason": None}
    assert client.model_ready(name) and client.model_ready(name, 1) and client.model_ready(name, "1")
    assert client.model_ready(name, 2) is False
    x, out, version = infer(triton_fleet[0], name, rows=3)
    np.testing.assert_array_equal(out, x * 2)
    assert version.tolist() == [[1], [1], [1]]
    config = client.model_config(name)
    assert config["max_batch_size"] == 8 and config["backend"] == "python"
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [("INPUT0", "TYPE_FP32", [4])]
    # Triton updates statistics just after it responds, so poll briefly.
    assert wait_for(lambda: client.stats(name)[0]["inference_stats"]["success"]["count"] == 1)
    [stats] = client.stats(name)
    assert stats["version"] == "1"
    assert stats["inference_count"] == 3  # three rows in one request
    # Loads are per server: the other server has the model in its repository but not loaded.
    assert row(TritonClient(triton_fleet[1].http_url), name)["state"] is None

    client.unload(name)

    assert row(client, name)["state"] == "UNLOADING"  # unload returns before it is done...
    assert client.ready() is False  # ...and meanwhile the whole server reports not ready
    assert wait_for(lambda: row(client, name)["state"] == "UNAVAILABLE")
    assert row(client, name)["reason"] == "unloaded"
    assert client.model_ready(name) is False
    assert client.ready() is True


def test_failure_rate_one_fails_every_request(client, deploy, triton_fleet):
    name = deploy("failing", versions={1: {"failure_rate": 1.0}})

    for _ in range(3):
        with pytest.raises(InferenceServerException, match="injected failure"):
            infer(triton_fleet[0], name)

    def counted():
        s = client.stats(name)[0]["inference_stats"]
        return s["success"]["count"], s["fail"]["count"]

    def failure_metric():
        lines = [line for line in client.metrics(triton_fleet[0].metrics_url).splitlines()
                 if line.startswith("nv_inference_request_failure{") and f'model="{name}"' in line]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    assert wait_for(lambda: counted() == (0, 3)), counted()
    assert wait_for(lambda: failure_metric() == 3), failure_metric()


def test_error_responses_fail_the_client_but_count_as_success_in_triton(client, deploy, triton_fleet):
    name = deploy("softfail", versions={1: {"failure_rate": 1.0, "failure_mode": "error_response"}})

    for _ in range(3):
        with pytest.raises(InferenceServerException, match="injected failure"):
            infer(triton_fleet[0], name)

    # A gate that reads Triton's own counters cannot see these errors.
    def counted():
        s = client.stats(name)[0]["inference_stats"]
        return s["success"]["count"], s["fail"]["count"]

    assert wait_for(lambda: counted() == (3, 0)), counted()


def test_failure_rate_half_fails_exactly_every_other_request(deploy, triton_fleet):
    name = deploy("flaky", versions={1: {"failure_rate": 0.5}})

    outcomes = []
    for _ in range(10):
        try:
            infer(triton_fleet[0], name, rows=1)
            outcomes.append("ok")
        except InferenceServerException:
            outcomes.append("fail")

    assert outcomes == ["ok", "fail"] * 5


def test_two_versions_side_by_side_with_their_own_latency(client, deploy, triton_fleet):
    name = deploy("bluegreen", versions={1: {}, 2: {"latency_ms": 250}},
                  config_extra={"version_policy": {"specific": {"versions": [1, 2]}}})
    server = triton_fleet[0]

    states = {r["version"]: r["state"] for r in client.index() if r["name"] == name}
    assert states == {"1": "READY", "2": "READY"}
    started = time.monotonic()
    assert infer(server, name, version=1)[2].tolist() == [[1], [1]]
    fast = time.monotonic() - started
    started = time.monotonic()
    assert infer(server, name, version=2)[2].tolist() == [[2], [2]]
    slow = time.monotonic() - started
    assert infer(server, name)[2].tolist() == [[2], [2]]  # no version: the highest ready one

    assert slow >= 0.25
    assert fast < 0.25
    # Two requests ran on version 2, each sleeping 250 ms inside the model.
    assert wait_for(lambda: client.stats(name, version=2)[0]["inference_stats"]["compute_infer"]["count"] == 2)
    assert client.stats(name, version=2)[0]["inference_stats"]["compute_infer"]["ns"] >= 2 * 250e6


def test_bad_config_override_is_a_request_error_with_tritons_text(client, s3_client):
    name = unique("badconfig")
    upload(s3_client, name, 1)
    config = test_model_config(name)
    config["input"][0]["data_type"] = "TYPE_NOPE"

    with pytest.raises(TritonRequestError) as excinfo:
        client.load(name, config=config)

    # Triton's HTTP answer is terse; the parse error itself only reaches the server log.
    err = excinfo.value
    assert err.status == 500
    assert err.message == f"failed to load '{name}', failed to poll from model repository"
    assert (err.url, err.operation) == (client.url, f"load {name}")
    assert str(err) == f"load {name}: {err.message} ({client.url})"
    assert row(client, name)["state"] is None
    assert client.ready() is True


def test_backend_rejection_carries_the_reason_and_unreadies_the_server(disposable_triton, s3_client):
    c = TritonClient(disposable_triton.http_url, load_timeout=60)
    name = unique("gpuonly")
    upload(s3_client, name, 1)
    config = {**test_model_config(name), "instance_group": [{"kind": "KIND_GPU", "count": 1}]}

    with pytest.raises(TritonRequestError, match="no GPUs are available") as excinfo:
        c.load(name, config=config)

    assert excinfo.value.status == 400
    assert row(c, name)["state"] == "UNAVAILABLE"
    assert c.ready() is False  # strict readiness: one failed model makes the server unready
    assert c.live() is True
    assert c.model_ready(name) is False
    # Unloading a model that never loaded changes nothing; only a good load clears the state.
    c.unload(name)
    time.sleep(0.5)
    assert row(c, name)["state"] == "UNAVAILABLE" and c.ready() is False
    c.load(name, config=test_model_config(name))
    assert c.ready() is True
    unload_and_wait(c, name)
    assert c.ready() is True


def test_load_with_files_override_needs_nothing_in_s3(client, triton_fleet):
    name = unique("inline")
    source = python_model_files(version=7)["model.py"]

    client.load(name, config=test_model_config(name), files={"1/model.py": source})
    try:
        assert infer(triton_fleet[0], name)[2].tolist() == [[7], [7]]
    finally:
        client.unload(name)


def test_model_names_with_dots_and_double_underscores_load_concurrently(s3_client, triton_fleet):
    c = TritonClient(triton_fleet[1].http_url, load_timeout=60)
    names = [unique("team.model"), unique("team__model"), unique("Team-Model_v2")]
    for name in names:
        upload(s3_client, name, 1)

    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: c.load(n, config=test_model_config(n)), names))
    try:
        for name in names:
            assert row(c, name)["state"] == "READY"
            assert infer(triton_fleet[1], name)[2].tolist() == [[1], [1]]
    finally:
        for name in names:
            unload_and_wait(c, name)


def test_client_validates_before_sending():
    c = TritonClient("http://127.0.0.1:9", timeout=1)  # nothing listens; validation must come first
    config = test_model_config("m")

    with pytest.raises(TypeError, match="config must be a dict"):
        c.load("m", config=json.dumps(config))
    with pytest.raises(ValueError, match="config override"):
        c.load("m", files={"1/model.py": b""})
    with pytest.raises(ValueError, match="bad file path"):
        c.load("m", config=config, files={"../model.py": b""})
    with pytest.raises(ValueError):
        c.model_ready("a/b")
    with pytest.raises(ValueError):
        TritonClient("ftp://127.0.0.1:8000")
    assert TritonClient("https://triton.example:8443/").url == "https://triton.example:8443"


def test_stopped_server_is_unavailable_quickly_and_restarts_on_the_same_ports(disposable_triton, s3_client):
    server = disposable_triton
    c = TritonClient(server.http_url, timeout=2, load_timeout=60)
    name = unique("restart")
    upload(s3_client, name, 1)
    c.load(name, config=test_model_config(name))
    ports = (server.http_port, server.grpc_port, server.metrics_port)

    started = time.monotonic()
    server.stop()
    stop_seconds = time.monotonic() - started
    server.stop()  # idempotent

    assert not server.is_running()
    assert stop_seconds < 10
    for call in (c.live, c.ready, c.index, lambda: c.load(name, config=test_model_config(name))):
        started = time.monotonic()
        with pytest.raises(TritonUnavailable) as excinfo:
            call()
        assert time.monotonic() - started < 2
        assert excinfo.value.url == server.http_url
    with pytest.raises(TritonUnavailable):
        c.metrics(server.metrics_url)

    server.restart()

    assert server.is_running()
    assert (server.http_port, server.grpc_port, server.metrics_port) == ports
    assert c.live() and c.ready()
    assert row(c, name)["state"] is None  # explicit mode: a restart forgets what was loaded


def test_a_server_that_never_answers_times_out_as_unavailable():
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        c = TritonClient(f"http://127.0.0.1:{port}", timeout=0.5, load_timeout=0.7)
        for call, limit in ((c.live, 0.5), (c.index, 0.5), (lambda: c.load("m"), 0.7)):
            started = time.monotonic()
            with pytest.raises(TritonUnavailable, match="within"):
                call()
            assert limit <= time.monotonic() - started < limit + 1.0


def test_unknown_host_is_unavailable():
    with pytest.raises(TritonUnavailable):
        TritonClient("http://switchyard-no-such-host.invalid:8000", timeout=3).live()


def test_errors_for_unknown_models(client):
    name = unique("ghost")
    with pytest.raises(TritonRequestError) as excinfo:
        client.model_config(name)
    assert excinfo.value.status in (400, 404) and name in excinfo.value.message
    with pytest.raises(TritonRequestError):
        client.stats(name)
    assert client.model_ready(name) is False


def test_metrics_text_has_request_counters_and_latency_summaries(client, deploy, triton_fleet):
    name = deploy("metrics")
    infer(triton_fleet[0], name)

    success = re.compile(rf'^nv_inference_request_success\{{[^}}]*model="{re.escape(name)}"[^}}]*\}} 1$', re.M)
    p99 = re.compile(rf'^nv_inference_request_summary_us\{{[^}}]*model="{re.escape(name)}"[^}}]*quantile="0.99"', re.M)

    assert wait_for(lambda: success.search(client.metrics(triton_fleet[0].metrics_url)))
    assert p99.search(client.metrics(triton_fleet[0].metrics_url))


def test_concurrent_calls_from_threads_do_not_interfere_or_leak(deploy, triton_fleet):
    name = deploy("concurrent")
    clients = [TritonClient(s.http_url) for s in triton_fleet]

    def probe(i):
        server = i % len(clients)
        c = clients[server]
        loaded_here = server == 0  # deploy() loaded the model on the first server only
        stats = len(c.stats(name)) if loaded_here else None
        return c.live(), c.ready(), c.metadata()["name"], c.model_ready(name), stats

    def fds_and_threads():
        return len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(probe, range(300)))
    expected = {i: (True, True, triton_fleet[i].name, i == 0, 1 if i == 0 else None) for i in range(len(triton_fleet))}
    assert all(r == expected[i % len(triton_fleet)] for i, r in enumerate(results))

    time.sleep(0.2)  # let the pool's native threads finish exiting
    fds, threads = fds_and_threads()
    for _ in range(30):  # short-lived threads, like a threaded dev server's request threads
        t = threading.Thread(target=clients[0].live)
        t.start()
        t.join()
    # A per-thread gevent hub would leak 2 fds and 1 native thread for each of the 30.
    def settled():
        now_fds, now_threads = fds_and_threads()
        return now_fds <= fds + 2 and now_threads <= threads + 2

    assert wait_for(settled, timeout=3), (fds_and_threads(), fds, threads)
