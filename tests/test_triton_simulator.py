"""The simulated Triton fleet of the fleet-scale benchmark (benchmarks/triton_simulator.py), driven
by Switchyard's own client module and by tritonclient.http, as the control plane would drive it."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from benchmarks.triton_simulator import register_simulated_fleet, start_simulator
from controlplane.devstack.testmodels import test_model_config
from controlplane.fleet.triton_client import TritonClient, TritonRequestError
from controlplane.placements import drift
from controlplane.placements.insight import StatsSample

MODEL = "vision.fraud-scorer"


@pytest.fixture(scope="module")
def simulator():
    sim = start_simulator(3, load_seconds=0.3, unload_seconds=0.2)
    yield sim
    sim.stop()


def config(name: str = MODEL, versions=(1, 2)) -> dict:
    return {**test_model_config(name), "version_policy": {"specific": {"versions": list(versions)}}}


def rows(client: TritonClient, name: str) -> list[dict]:
    return [r for r in client.index() if r["name"] == name]


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return found


def infer(url: str, version: str, data: np.ndarray, **kwargs):
    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    try:
        tensor = triton_http.InferInput("INPUT0", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=kwargs.pop("binary_input", True))
        return client.infer(MODEL, [tensor], model_version=version, **kwargs)
    finally:
        client.close()


def test_the_real_client_loads_two_versions_infers_through_each_and_unloads(simulator):
    url = simulator.urls[0]
    client = TritonClient(url)
    assert client.live() and client.ready()
    meta = client.metadata()
    assert meta["name"] == "simulated-triton-0000" and "model_repository" in meta["extensions"]
    assert client.index() == []

    wanted = config()
    seconds = client.load(MODEL, config=wanted)  # answers once both versions are READY
    assert seconds >= 0.3
    assert [(r["version"], r["state"]) for r in rows(client, MODEL)] == [("1", "READY"), ("2", "READY")]
    assert client.ready() and client.model_ready(MODEL) and client.model_ready(MODEL, 1) and client.model_ready(MODEL, 2)
    assert not client.model_ready(MODEL, 3)
    # The effective config carries what Triton fills in, and shows no drift from ours.
    effective = client.model_config(MODEL)
    assert effective["instance_group"][0]["name"] == f"{MODEL}_0" and effective["default_model_filename"] == "model.py"
    assert drift.classify(versions=[1, 2], config=wanted, rows=rows(client, MODEL), effective=effective) == ("", "")

    data = np.arange(8, dtype=np.float32).reshape(2, 4)
    for version in ("1", "2"):  # binary in, binary out (tritonclient's defaults)
        result = infer(url, version, data)
        assert result.get_response()["model_version"] == version
        assert result.as_numpy("OUTPUT0").tolist() == (data * 2).tolist()
        assert result.as_numpy("VERSION").tolist() == [[int(version)], [int(version)]]
    latest = infer(url, "", data[:1], binary_input=False, request_id="r-1",
                   outputs=[triton_http.InferRequestedOutput("VERSION", binary_data=False)])
    assert latest.get_response() == {"id": "r-1", "model_name": MODEL, "model_version": "2", "outputs": [
        {"name": "VERSION", "datatype": "INT32", "shape": [1, 1], "data": [2]}]}

    stats = client.stats(MODEL)
    assert [s["version"] for s in stats] == ["1", "2"]
    sample = StatsSample.from_triton(stats, at=time.time())
    assert (sample.requests, sample.inferences, sample.executions) == (3, 5, 3) and sample.busy_ns > 0
    one = client.stats(MODEL, 1)[0]
    assert one["inference_count"] == 2 and [b["batch_size"] for b in one["batch_stats"]] == [2]

    client.unload(MODEL)  # answers at once; the versions are UNLOADING meanwhile
    wait_for(lambda: not drift.is_loaded(rows(client, MODEL)))
    assert {(r["state"], r["reason"]) for r in rows(client, MODEL)} == {("UNAVAILABLE", "unloaded")}
    assert client.ready() and not client.model_ready(MODEL)
    with pytest.raises(TritonRequestError) as gone:
        client.model_config(MODEL)
    assert gone.value.status == 404 and "has no available versions" in gone.value.message


def test_a_load_shows_loading_and_the_server_is_not_ready_until_it_is_done(simulator):
    url = simulator.urls[2]
    simulator.control([2], load_seconds=1.0)
    client = TritonClient(url)
    try:
        loader = threading.Thread(target=client.load, args=("slow",), kwargs={"config": config("slow")})
        loader.start()
        wait_for(lambda: drift.versions_in(rows(client, "slow"), drift.LOADING) == {1, 2})
        assert not client.ready() and not client.model_ready("slow", 1)
        loader.join()
        assert drift.versions_in(rows(client, "slow"), drift.READY) == {1, 2} and client.ready()

        # A new version policy alone: v2 keeps serving, v3 loads, v1 unloads.
        simulator.control([2], load_seconds=0.3)
        client.load("slow", config=config("slow", (2, 3)))
        assert drift.versions_in(rows(client, "slow"), drift.READY) == {2, 3}
        wait_for(lambda: drift.versions_in(rows(client, "slow"), *drift.LOADED) == {2, 3})
        # The same config again changes nothing and answers at once.
        assert client.load("slow", config=config("slow", (2, 3))) < 0.3
    finally:
        simulator.control([2], load_seconds=0.3)


def test_errors_come_back_as_triton_words_them(simulator):
    url = simulator.urls[1]
    client = TritonClient(url)
    with pytest.raises(InferenceServerException) as unknown:
        infer(url, "1", np.zeros((1, 4), dtype=np.float32))
    assert unknown.value.status() == "404" and "Request for unknown model: 'vision.fraud-scorer' is not found" in str(unknown.value)
    with pytest.raises(TritonRequestError) as bad:
        client.load("bad", config={**config("bad"), "not_a_field": 1})
    assert bad.value.status == 500 and "failed to poll from model repository" in bad.value.message
    with pytest.raises(TritonRequestError) as no_stats:
        client.stats("bad")
    assert no_stats.value.status == 400 and "'bad' is not available" in no_stats.value.message

    # A model that fails to load: 400 with the reason per version; the server is not ready.
    simulator.control([1], load_error="simulated: CUDA out of memory")
    try:
        with pytest.raises(TritonRequestError) as failed:
            client.load("broken", config=config("broken"))
        assert failed.value.status == 400
        assert failed.value.message.startswith("load failed for model 'broken': version 2 is at UNAVAILABLE state")
        assert {r["reason"] for r in rows(client, "broken")} == {"simulated: CUDA out of memory"}
        assert not client.ready()
    finally:
        simulator.control([1], load_error=None)
    client.unload("broken")
    assert client.ready()

    client.load(MODEL, config=config(versions=(1,)))
    tensor = triton_http.InferInput("INPUT0", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    plain = triton_http.InferenceServerClient(url.removeprefix("http://"))
    with pytest.raises(InferenceServerException, match="unexpected shape for input 'INPUT0'"):
        plain.infer(MODEL, [tensor])
    with pytest.raises(InferenceServerException, match="version 2 is not found"):
        plain.infer(MODEL, [tensor], model_version="2")
    plain.close()
    assert simulator.state(1)["requests"]["load"] == 3


def test_two_hundred_simulated_servers_all_answer_ready():
    with start_simulator(200) as sim:
        assert len(set(sim.ports)) == 200
        with ThreadPoolExecutor(32) as pool:
            ready = list(pool.map(lambda url: TritonClient(url).ready(), sim.urls))
            names = set(pool.map(lambda url: TritonClient(url).metadata()["name"], sim.urls))
        assert all(ready)
        assert names == {f"simulated-triton-{i:04d}" for i in range(200)}


@pytest.mark.django_db
def test_register_simulated_fleet_goes_through_the_audited_services_and_probes(simulator):
    from controlplane.audit.models import AuditEvent
    from controlplane.fleet.models import ServerStatus

    servers = register_simulated_fleet(simulator, prefix="sim-a")
    assert [s.name for s in servers] == ["sim-a-0000", "sim-a-0001", "sim-a-0002"]
    assert [s.http_url for s in servers] == simulator.urls
    assert all(s.status == ServerStatus.UP and s.triton_version == "2.51.0" for s in servers)
    assert servers[0].pool.name == "simulated-triton"
    assert AuditEvent.objects.filter(action="server.register").count() == 3
    assert AuditEvent.objects.filter(action="pool.create").count() == 1
