"""Every shape of valid serving config loads on a real tritonserver with the rendered override,
and Triton reports back what we rendered (GET /v2/models/{m}/config). Invalid configs stop at
our validator and never reach Triton.

Shapes are grouped so that each load covers several fields (a load takes ~1.5 s on CPU).
KIND_GPU cannot load on this CPU-only fleet; it is covered by the validator tests.
"""
import time

import numpy as np
import pytest
import tritonclient.http as triton_http
from django.core.exceptions import ValidationError

from controlplane.devstack.testmodels import TEST_MODEL_OUTPUTS, python_model_files, upload_model_version
from controlplane.fleet.triton_client import TritonClient
from controlplane.registry.models import Model
from controlplane.serving.models import ServingConfig
from controlplane.serving.render import render_model_config
from controlplane.serving.validation import validate_spec
from tests.conftest import TENSORS_IN
from tests.fleet_fixtures import TEST_BUCKET, TEST_PREFIX

pytestmark = pytest.mark.integration

WARM_ZEROS = {"name": "zeros", "batch_size": 4, "count": 2, "inputs": {"INPUT0": {"zero_data": True}}}
WARM_RANDOM = {"name": "random", "batch_size": 1, "inputs": {"INPUT0": {"dims": [4], "random_data": True}}}

# (id, spec, versions passed by the placement, versions Triton should have READY)
SHAPES = [
    ("no-batching-defaults", {}, [1], ["1"]),
    ("dynamic-batching-priorities-queue-policy-cache-warmup-2xcpu-latest2", {
        "max_batch_size": 8,
        "dynamic_batching": {
            "preferred_batch_size": [8, 2, 4], "max_queue_delay_microseconds": 2500, "priority_levels": 3,
            "default_priority_level": 2,
            "default_queue_policy": {"timeout_action": "DELAY", "default_timeout_microseconds": 100000,
                                     "allow_timeout_override": True, "max_queue_size": 64},
        },
        "instance_group": [{"kind": "KIND_CPU", "count": 2}],
        "version_policy": {"latest": {"num_versions": 2}},
        "model_warmup": [WARM_ZEROS],
        "response_cache": {"enable": True},
    }, None, ["2", "3"]),
    ("empty-dynamic-batching-lowered-max-batch-all-versions-random-warmup", {
        "max_batch_size": 4,
        "dynamic_batching": {},
        "version_policy": {"all": {}},
        "model_warmup": [WARM_RANDOM],
    }, None, ["1", "2", "3"]),
    ("spec-specific-versions-auto-and-model-kinds", {
        "instance_group": [{"kind": "KIND_AUTO", "count": 1}, {"kind": "KIND_MODEL", "count": 1}],
        "version_policy": {"specific": {"versions": [1, 3]}},
    }, None, ["1", "3"]),
    ("placement-versions-win-over-spec-policy", {
        "dynamic_batching": {"preferred_batch_size": [4], "max_queue_delay_microseconds": 0},
        "version_policy": {"latest": {"num_versions": 1}},
    }, [2], ["2"]),
]

INVALID = [
    ({"dynamic_batching": {"preferred_batch_size": [16]}}, "dynamic_batching.preferred_batch_size[0]"),
    ({"instance_group": [{"kind": "KIND_CPU", "count": 0}]}, "instance_group[0].count"),
    ({"instance_group": [{"kind": "KIND_GPU", "count": 1}]}, "instance_group[0].kind"),
    ({"dynamic_batching": {"priority_levels": 2}}, "dynamic_batching.default_priority_level"),
    ({"version_policy": {"latest": {"num_versions": 0}}}, "version_policy.latest.num_versions"),
    ({"model_warmup": [{**WARM_ZEROS, "batch_size": 9}]}, "model_warmup[0].batch_size"),
    ({"model_warmup": [{"name": "w", "batch_size": 1, "inputs": {"INPUT0": {"data_type": "TYPE_INT32", "zero_data": True}}}]},
     "model_warmup[0].inputs.INPUT0.data_type"),
    ({"max_batch_size": 4.0}, "max_batch_size"),
    ({"dynamic_batching": {"max_queue_delay": 10}}, "dynamic_batching.max_queue_delay"),
]


def _registered(s3, team, name) -> Model:
    model = Model.objects.create(team=team, name=name, backend="python", max_batch_size=8,
                                 inputs=TENSORS_IN, outputs=TEST_MODEL_OUTPUTS)
    for version in (1, 2, 3):
        upload_model_version(s3, bucket=TEST_BUCKET, prefix=TEST_PREFIX, model_name=model.triton_name,
                             version=version, files=python_model_files(version=version))
    return model


@pytest.fixture
def triton_model(db, s3, team, request, unloading):
    """A model of its own per shape, so that a load need not wait for the last one's unload."""
    model = _registered(s3, team, f"serving-shape-{request.node.callspec.indices['spec']}")
    unloading.append(model.triton_name)
    return model


@pytest.fixture(scope="module")
def unloading(triton_fleet):
    """Leave the session's fleet clean: wait until every model of this module has unloaded."""
    names: list[str] = []
    yield names
    triton = TritonClient(triton_fleet[0].http_url, timeout=30)
    for name in names:
        unload_and_wait(triton, name)


@pytest.fixture
def triton(triton_fleet):
    return TritonClient(triton_fleet[0].http_url, timeout=30)


def assert_reported(ours, theirs, path="config"):
    """Every field we rendered is reported back with the same value (Triton adds its defaults)."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict), f"{path}: Triton reports {theirs!r}"
        for key, value in ours.items():
            assert key in theirs, f"{path}.{key} missing from Triton's config"
            assert_reported(value, theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(theirs) == len(ours), f"{path}: {theirs!r} != {ours!r}"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_reported(a, b, f"{path}[{index}]")
    else:
        assert theirs == ours and type(theirs) is type(ours), f"{path}: Triton reports {theirs!r}, we sent {ours!r}"


def ready_versions(triton, name) -> list[str]:
    return sorted(e["version"] for e in triton.index() if e["name"] == name and e["state"] == "READY")


def unload_and_wait(triton, name, timeout=30.0):
    if any(e["name"] == name and e["state"] in ("READY", "LOADING") for e in triton.index()):
        triton.unload(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [e for e in triton.index() if e["name"] == name and e["state"] in ("READY", "LOADING", "UNLOADING")]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not unload within {timeout} s")


@pytest.mark.parametrize("spec, versions, expect_ready", [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_valid_config_loads_and_triton_reports_what_we_rendered(triton, triton_model, spec, versions, expect_ready):
    config = ServingConfig(model=triton_model, revision=1, spec=validate_spec(spec, model=triton_model))
    rendered = render_model_config(triton_model, config, versions=versions)
    name = triton_model.triton_name
    triton.load(name, config=rendered)
    try:
        reported = triton.model_config(name)
        # NormalizeInstanceGroup resolves KIND_AUTO to KIND_CPU on a server without GPUs.
        expected = {**rendered, "instance_group": [
            {**g, "kind": "KIND_CPU" if g["kind"] == "KIND_AUTO" else g["kind"]} for g in rendered["instance_group"]]}
        assert_reported(expected, reported)
        # Triton's own normalisation of what we leave to it (NormalizeModelConfig).
        if "dynamic_batching" in rendered and "preferred_batch_size" not in rendered["dynamic_batching"]:
            assert reported["dynamic_batching"]["preferred_batch_size"] == [rendered["max_batch_size"]]
        if "response_cache" not in rendered:
            assert not (reported.get("response_cache") or {}).get("enable")
        assert ready_versions(triton, name) == expect_ready
        if spec.get("dynamic_batching", {}).get("preferred_batch_size"):
            _infer_once(triton, name, int(expect_ready[-1]))
    finally:
        triton.unload(name)  # each shape has its own model; the module waits for all at the end


def _infer_once(triton, name, version):
    """A batched request is served by the loaded version: the config is not only accepted."""
    client = triton_http.InferenceServerClient(triton.url.removeprefix("http://"))
    try:
        data = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = triton_http.InferInput("INPUT0", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer(name, [tensor])
        assert result.as_numpy("OUTPUT0").tolist() == (data * 2).tolist()
        assert result.as_numpy("VERSION").ravel().tolist() == [version, version]
    finally:
        client.close()


def test_invalid_configs_stop_at_our_validator_and_never_reach_triton(triton, s3, team):
    triton_model = _registered(s3, team, "serving-never-loaded")
    name = triton_model.triton_name
    for spec, path in INVALID:
        with pytest.raises(ValidationError) as exc:
            config = ServingConfig(model=triton_model, revision=1, spec=validate_spec(spec, model=triton_model, pool_has_gpus=False))
            triton.load(name, config=render_model_config(triton_model, config, versions=[1]))
        assert path in exc.value.message_dict, (spec, exc.value.message_dict)
    # Nothing was ever sent: Triton has not even tried to load the model.
    assert [e for e in triton.index() if e["name"] == name and e["state"]] == []
