"""GPU memory headroom for a same-servers green: the pure arithmetic, then the whole check against a
real Prometheus scraping GPU servers' nv_gpu_memory_* and blue's memory_usage read from the
servers' statistics.

The GPU servers are the simulated Triton of benchmarks/triton_simulator.py (named so: it reports
itself as `simulated-triton-NNNN`), because this machine has no GPU and a real tritonserver on a
CPU reports neither nv_gpu_* nor GPU memory_usage. Prometheus, the database and the API are real.
"""
from __future__ import annotations

import pytest

from benchmarks.triton_simulator import register_simulated_fleet, start_simulator
from controlplane.audit.context import Actor
from controlplane.deployments.models import Deployment
from controlplane.devstack.testmodels import test_model_config
from controlplane.deployments.services.capacity import Headroom, gpu_bytes, gpu_headroom, headroom_problems
from controlplane.fleet.triton_client import TritonClient
from controlplane.placements.models import PlacementTarget
from tests.deployments.conftest import URL, body, place_ready
from tests.metrics.conftest import prometheus, prometheus_token, wait_for  # noqa: F401 (fixtures)

GIB = 2**30
TOTAL = 85899345920  # what the simulated page says each GPU has: 80 GiB


# -- pure ---------------------------------------------------------------------------------------


def test_gpu_bytes_sums_the_gpu_rows_of_every_version_and_ignores_the_rest():
    stats = [
        {"version": "1", "memory_usage": [{"type": "GPU", "id": 0, "byte_size": 3 * GIB},
                                          {"type": "CPU", "id": 0, "byte_size": 9 * GIB},
                                          {"type": "GPU", "id": 1, "byte_size": 1 * GIB}]},
        {"version": "2", "memory_usage": [{"type": "GPU", "id": 0, "byte_size": 2 * GIB}]},
    ]
    assert gpu_bytes(stats) == 6 * GIB


@pytest.mark.parametrize("stats", [
    [],
    [{"version": "1", "memory_usage": []}],
    [{"version": "1"}],
    [{"version": "1", "memory_usage": [{"type": "CPU", "id": 0, "byte_size": 5}]}],
    [{"version": "1", "memory_usage": [{"type": "GPU", "id": 0, "byte_size": True}]}],
    [{"version": "1", "memory_usage": [{"type": "GPU", "id": 0, "byte_size": "5"}, "junk"]}],
    ["junk"],
])
def test_gpu_bytes_is_unknown_when_no_gpu_row_says_a_number(stats):
    assert gpu_bytes(stats) is None


def test_headroom_problems_give_the_numbers_and_say_why_something_is_unknown():
    rows = [
        Headroom("fits", total_bytes=80 * GIB, used_bytes=70 * GIB, blue_bytes=10 * GIB),
        Headroom("full", total_bytes=80 * GIB, used_bytes=75 * GIB, blue_bytes=6 * GIB),
        Headroom("dark", total_bytes=None, used_bytes=None, blue_bytes=1 * GIB,
                 memory_problem="Prometheus is not answering: timed out"),
        Headroom("silent", total_bytes=80 * GIB, used_bytes=1 * GIB, blue_bytes=None,
                 blue_problem="Triton reports no GPU memory_usage for v1"),
    ]
    assert headroom_problems(rows) == [
        "full: 75.0 GiB of 80.0 GiB GPU memory in use, and green needs about 6.0 GiB more (blue's measured memory_usage)",
        "dark: GPU memory unknown (Prometheus is not answering: timed out)",
        "silent: blue's GPU memory_usage unknown (Triton reports no GPU memory_usage for v1)",
    ]


# -- against Prometheus and the (simulated) GPU servers ------------------------------------------


@pytest.fixture(scope="module")
def gpu_simulator():
    sim = start_simulator(2, load_seconds=0.05, unload_seconds=0.05)
    yield sim
    sim.stop()


@pytest.fixture
def gpu_blue(gpu_simulator, model, labels, platform_admin, prometheus, prometheus_token, settings):  # noqa: F811
    """vision/fraud-scorer v1 loaded and READY on two one-GPU simulated servers, behind the
    label-bound endpoint vision.scorer, with Prometheus scraping both."""
    settings.SWITCHYARD_PROMETHEUS_URL = prometheus.url
    gpu_simulator.control(version_gpu_bytes=2 * GIB, gpu_memory_used_bytes=None)
    servers = register_simulated_fleet(gpu_simulator, actor=Actor(user=platform_admin, source="api"),
                                       prefix="gpu-sim", gpu_count=1)
    blue_config = {**test_model_config(model.triton_name), "version_policy": {"specific": {"versions": [1]}}}
    for url in gpu_simulator.urls:
        TritonClient(url).load(model.triton_name, config=blue_config)
    place_ready(model, [1], servers)
    from controlplane.endpoints.services import endpoint_create
    endpoint_create(actor=Actor.system(), team=model.team, model=model, name="scorer", kind="label", label="stable")
    targets = list(PlacementTarget.objects.select_related("server", "model"))
    wait_for(lambda: all(h.known and h.used_bytes < 30 * GIB for h in gpu_headroom(targets, 1)), timeout=30,
             what="Prometheus to record both servers' GPU memory, with room")
    yield servers
    for url in gpu_simulator.urls:
        TritonClient(url).unload(model.triton_name)


def _plan(api, deployer):
    client = api()
    client.force_authenticate(deployer)
    return client.post(f"{URL}plan/", body(placement="same_servers"), format="json")


def _used_now(prom, server: str) -> float | None:
    found = prom.query(f'switchyard:gpu_memory_used_bytes{{server="{server}"}}')
    return float(found[0]["value"][1]) if found else None


@pytest.mark.django_db(transaction=True)
def test_a_same_servers_green_fits_beside_blue_when_the_gpus_have_room(gpu_blue, api, deployer):
    answer = _plan(api, deployer)
    assert answer.status_code == 200, answer.json()
    assert answer.json()["servers"] == ["gpu-sim-0000", "gpu-sim-0001"]
    assert (answer.json()["blue_version"], answer.json()["green_version"]) == (1, 2)


@pytest.mark.django_db(transaction=True)
def test_a_full_gpu_refuses_the_plan_and_the_deployment_with_the_numbers(
        gpu_simulator, gpu_blue, api, deployer, prometheus):  # noqa: F811
    gpu_simulator.control(servers=[1], gpu_memory_used_bytes=79 * GIB)
    wait_for(lambda: _used_now(prometheus, "gpu-sim-0001") == 79 * GIB, timeout=20,
             what="Prometheus to see gpu-sim-0001's GPU nearly full")
    answer = _plan(api, deployer)
    assert answer.status_code == 400, answer.json()
    message = answer.json()["fields"]["placement"][0]
    assert "gpu-sim-0001: 79.0 GiB of 80.0 GiB GPU memory in use, and green needs about 2.0 GiB more" in message
    assert "gpu-sim-0000" not in message  # it has room
    client = api()
    client.force_authenticate(deployer)
    created = client.post(URL, body(placement="same_servers"), format="json")
    assert created.status_code == 400 and created.json()["fields"]["placement"] == answer.json()["fields"]["placement"]
    assert not Deployment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_blue_whose_backend_reports_no_gpu_memory_is_refused_as_unknown_not_taken_for_zero(
        gpu_simulator, gpu_blue, api, deployer):
    gpu_simulator.control(version_gpu_bytes=0)
    answer = _plan(api, deployer)
    assert answer.status_code == 400, answer.json()
    message = answer.json()["fields"]["placement"][0]
    assert "gpu-sim-0000: blue's GPU memory_usage unknown (Triton reports no GPU memory_usage for v1" in message
    assert "gpu-sim-0001: blue's GPU memory_usage unknown" in message
