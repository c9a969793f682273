"""The load override: Triton's protobuf JSON names, enums as strings, and who decides versions."""
import json

import pytest

from controlplane.serving.models import ServingConfig
from controlplane.serving.render import render_model_config, render_spec
from controlplane.serving.validation import validate_spec
from tests.conftest import TENSORS_IN, TENSORS_OUT
from tests.serving.conftest import unsaved_model

MODEL = unsaved_model()


def config(spec) -> ServingConfig:
    return ServingConfig(model=MODEL, revision=1, spec=validate_spec(spec, model=MODEL))


def test_defaults_render_a_complete_loadable_config():
    assert render_model_config(MODEL, None, versions=[1]) == {
        "name": "vision.fraud-scorer",
        "backend": "python",
        "max_batch_size": 8,
        "input": TENSORS_IN,
        "output": TENSORS_OUT,
        "version_policy": {"specific": {"versions": [1]}},
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
    }
    # An empty revision renders exactly like no revision.
    assert render_model_config(MODEL, config({}), versions=[1]) == render_model_config(MODEL, None, versions=[1])


def test_full_spec_renders_every_field_with_protobuf_names_and_enum_strings():
    rendered = render_model_config(MODEL, config({
        "max_batch_size": 4,
        "dynamic_batching": {
            "preferred_batch_size": [4, 2], "max_queue_delay_microseconds": 500, "priority_levels": 2,
            "default_priority_level": 1,
            "default_queue_policy": {"timeout_action": "DELAY", "default_timeout_microseconds": 10000,
                                     "allow_timeout_override": True, "max_queue_size": 16},
        },
        "instance_group": [{"kind": "KIND_CPU", "count": 2}],
        "model_warmup": [{"name": "zeros", "batch_size": 2, "inputs": {"INPUT0": {"zero_data": True}}}],
        "response_cache": {"enable": True},
    }), versions=[2])
    assert rendered["max_batch_size"] == 4
    assert rendered["dynamic_batching"] == {
        "preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 500, "priority_levels": 2,
        "default_priority_level": 1,
        "default_queue_policy": {"timeout_action": "DELAY", "default_timeout_microseconds": 10000,
                                 "allow_timeout_override": True, "max_queue_size": 16},
    }
    assert rendered["instance_group"] == [{"kind": "KIND_CPU", "count": 2}]
    assert rendered["model_warmup"] == [{"name": "zeros", "batch_size": 2, "count": 0,
                                         "inputs": {"INPUT0": {"data_type": "TYPE_FP32", "dims": [4], "zero_data": True}}}]
    assert rendered["response_cache"] == {"enable": True}
    # What goes over the wire: plain JSON, 64-bit fields as numbers (Triton prints them so too).
    assert json.loads(json.dumps(rendered)) == rendered
    assert isinstance(rendered["dynamic_batching"]["max_queue_delay_microseconds"], int)


def test_gpus_render_only_when_listed():
    onnx = unsaved_model(backend="onnxruntime")
    spec = validate_spec({"instance_group": [{"kind": "KIND_GPU", "gpus": [0, 1]}, {"kind": "KIND_CPU"}]}, model=onnx)
    assert render_spec(onnx, spec, versions=[1])["instance_group"] == [
        {"kind": "KIND_GPU", "count": 1, "gpus": [0, 1]}, {"kind": "KIND_CPU", "count": 1},
    ]


def test_backend_defaults_and_platforms():
    assert render_model_config(unsaved_model(backend="onnxruntime"), None, versions=[1])["instance_group"] == [{"kind": "KIND_AUTO", "count": 1}]
    plan = render_model_config(unsaved_model(backend="tensorrt"), None, versions=[1])
    assert (plan["platform"], plan["backend"]) == ("tensorrt_plan", "tensorrt")


def test_empty_preferred_sizes_and_disabled_extras_are_left_to_triton():
    rendered = render_model_config(MODEL, config({"dynamic_batching": {}, "response_cache": {"enable": False}}), versions=[1])
    assert rendered["dynamic_batching"] == {"max_queue_delay_microseconds": 0, "priority_levels": 0, "default_priority_level": 0,
                                            "default_queue_policy": {"timeout_action": "REJECT", "default_timeout_microseconds": 0,
                                                                     "allow_timeout_override": False, "max_queue_size": 0}}
    assert "response_cache" not in rendered and "model_warmup" not in rendered


def test_placement_versions_win_over_the_spec_policy():
    latest = config({"version_policy": {"latest": {"num_versions": 2}}})
    assert render_model_config(MODEL, latest, versions=[7, 3, 7])["version_policy"] == {"specific": {"versions": [3, 7]}}


@pytest.mark.parametrize("versions", [None, []])
def test_without_versions_the_spec_policy_is_used_then_triton_default(versions):
    assert render_model_config(MODEL, config({"version_policy": {"all": {}}}), versions=versions)["version_policy"] == {"all": {}}
    assert render_model_config(MODEL, config({}), versions=versions)["version_policy"] == {"latest": {"num_versions": 1}}


@pytest.mark.parametrize("versions", [[0], [True], ["1"]])
def test_bad_versions_are_a_programming_error(versions):
    with pytest.raises(ValueError):
        render_model_config(MODEL, None, versions=versions)


def test_rendering_does_not_modify_the_stored_spec():
    stored = config({"dynamic_batching": {"preferred_batch_size": [2]}, "model_warmup": [
        {"name": "w", "batch_size": 1, "inputs": {"INPUT0": {"zero_data": True}}}]})
    before = json.dumps(stored.spec, sort_keys=True)
    rendered = render_model_config(MODEL, stored, versions=[1])
    rendered["model_warmup"][0]["name"] = "changed"
    rendered["dynamic_batching"]["preferred_batch_size"].append(4)
    assert json.dumps(stored.spec, sort_keys=True) == before
