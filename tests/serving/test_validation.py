"""Every rule of serving/validation.py, each asserting the field path its error names."""
import pytest
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from controlplane.serving.validation import MAX_INSTANCE_COUNT, spec_errors, validate_spec
from tests.serving.conftest import unsaved_model

MODEL = unsaved_model()  # python, max_batch_size 8, INPUT0 TYPE_FP32 [4]
NO_BATCH = unsaved_model(max_batch_size=0, inputs=[{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [1, 4]}])
VARIABLE = unsaved_model(inputs=[{"name": "TOKENS", "data_type": "TYPE_INT64", "dims": [-1, 16]}])
TENSORRT = unsaved_model(backend="tensorrt")
WARM = {"name": "zeros", "batch_size": 1, "inputs": {"INPUT0": {"zero_data": True}}}


def errors(spec, model=MODEL, **kwargs) -> dict:
    with pytest.raises(ValidationError) as exc:
        validate_spec(spec, model=model, **kwargs)
    return exc.value.message_dict


def test_empty_spec_is_valid_and_normalised():
    assert validate_spec({}, model=MODEL) == {"max_batch_size": 8, "model_warmup": [], "response_cache": {"enable": False}}
    assert validate_spec(None, model=MODEL) == validate_spec({}, model=MODEL)


def test_null_section_is_the_same_as_leaving_it_out():
    assert validate_spec({"dynamic_batching": None, "instance_group": None, "version_policy": None}, model=MODEL) \
        == validate_spec({}, model=MODEL)


def test_full_spec_is_normalised_with_defaults_filled_and_sets_sorted():
    spec = {
        "max_batch_size": 8,
        "dynamic_batching": {"preferred_batch_size": [8, 2, 4], "max_queue_delay_microseconds": 100},
        "instance_group": [{"kind": "KIND_CPU", "count": 2}],
        "version_policy": {"specific": {"versions": [3, 1]}},
        "model_warmup": [WARM],
        "response_cache": {"enable": True},
    }
    assert validate_spec(spec, model=MODEL) == {
        "max_batch_size": 8,
        "dynamic_batching": {
            "preferred_batch_size": [2, 4, 8], "max_queue_delay_microseconds": 100, "priority_levels": 0,
            "default_priority_level": 0,
            "default_queue_policy": {"timeout_action": "REJECT", "default_timeout_microseconds": 0,
                                     "allow_timeout_override": False, "max_queue_size": 0},
        },
        "instance_group": [{"kind": "KIND_CPU", "count": 2, "gpus": []}],
        "version_policy": {"specific": {"versions": [1, 3]}},
        "model_warmup": [{"name": "zeros", "batch_size": 1, "count": 0,
                          "inputs": {"INPUT0": {"data_type": "TYPE_FP32", "dims": [4], "zero_data": True}}}],
        "response_cache": {"enable": True},
    }


def test_spec_must_be_an_object():
    assert NON_FIELD_ERRORS in errors([{"max_batch_size": 4}])


def test_spec_errors_are_keyed_as_request_fields():
    with pytest.raises(ValidationError) as exc:
        validate_spec({"foo": 1, "instance_group": [{"count": 0}]}, model=MODEL)
    assert set(spec_errors(exc.value)) == {"spec.foo", "spec.instance_group[0].count"}
    with pytest.raises(ValidationError) as exc:
        validate_spec("x", model=MODEL)
    assert set(spec_errors(exc.value)) == {"spec"}


def test_unknown_top_level_field():
    found = errors({"max_batch_sise": 4})
    assert list(found) == ["max_batch_sise"] and "Unknown field" in found["max_batch_sise"][0]


@pytest.mark.parametrize("spec, path", [
    ({"dynamic_batching": {"max_queue_delay": 100}}, "dynamic_batching.max_queue_delay"),
    ({"dynamic_batching": {"default_queue_policy": {"timeout": 1}}}, "dynamic_batching.default_queue_policy.timeout"),
    ({"instance_group": [{"kind": "KIND_CPU", "replicas": 2}]}, "instance_group[0].replicas"),
    ({"version_policy": {"latest": {"n": 2}}}, "version_policy.latest.n"),
    ({"version_policy": {"newest": {}}}, "version_policy.newest"),
    ({"model_warmup": [{**WARM, "repeat": 2}]}, "model_warmup[0].repeat"),
    ({"model_warmup": [{**WARM, "inputs": {"INPUT0": {"zero_data": True, "shape": [4]}}}]}, "model_warmup[0].inputs.INPUT0.shape"),
    ({"response_cache": {"enabled": True}}, "response_cache.enabled"),
])
def test_unknown_nested_fields_name_their_path(spec, path):
    assert path in errors(spec)


@pytest.mark.parametrize("spec, path, words", [
    ({"input": []}, "input", "registry"),
    ({"name": "x"}, "name", "registry"),
    ({"sequence_batching": {}}, "sequence_batching", "does not manage"),
    ({"dynamic_batching": {"preserve_ordering": True}}, "dynamic_batching.preserve_ordering", "does not manage"),
    ({"instance_group": [{"name": "g", "kind": "KIND_CPU"}]}, "instance_group[0].name", "does not manage"),
    ({"model_warmup": [{**WARM, "inputs": {"INPUT0": {"input_data_file": "x.bin"}}}]},
     "model_warmup[0].inputs.INPUT0.input_data_file", "zero_data or random_data"),
])
def test_triton_fields_that_are_not_managed_say_so(spec, path, words):
    assert words in " ".join(errors(spec)[path])


@pytest.mark.parametrize("spec, path", [
    ({"max_batch_size": True}, "max_batch_size"),
    ({"max_batch_size": 4.0}, "max_batch_size"),
    ({"max_batch_size": "4"}, "max_batch_size"),
    ({"dynamic_batching": []}, "dynamic_batching"),
    ({"dynamic_batching": {"preferred_batch_size": "4,8"}}, "dynamic_batching.preferred_batch_size"),
    ({"dynamic_batching": {"preferred_batch_size": [4, True]}}, "dynamic_batching.preferred_batch_size[1]"),
    ({"dynamic_batching": {"max_queue_delay_microseconds": "100"}}, "dynamic_batching.max_queue_delay_microseconds"),
    ({"dynamic_batching": {"default_queue_policy": {"allow_timeout_override": 1}}},
     "dynamic_batching.default_queue_policy.allow_timeout_override"),
    ({"dynamic_batching": {"default_queue_policy": {"timeout_action": 1}}}, "dynamic_batching.default_queue_policy.timeout_action"),
    ({"instance_group": {"kind": "KIND_CPU"}}, "instance_group"),
    ({"instance_group": ["KIND_CPU"]}, "instance_group[0]"),
    ({"instance_group": [{"count": "2"}]}, "instance_group[0].count"),
    ({"instance_group": [{"gpus": 0}]}, "instance_group[0].gpus"),
    ({"version_policy": "latest"}, "version_policy"),
    ({"model_warmup": {"name": "w"}}, "model_warmup"),
    ({"model_warmup": [{**WARM, "batch_size": 1.5}]}, "model_warmup[0].batch_size"),
    ({"model_warmup": [{**WARM, "inputs": []}]}, "model_warmup[0].inputs"),
    ({"response_cache": True}, "response_cache"),
    ({"response_cache": {"enable": "yes"}}, "response_cache.enable"),
])
def test_wrong_types_are_refused_bool_is_not_an_int(spec, path):
    assert path in errors(spec)


def test_max_batch_size_must_not_be_negative():
    assert "0 or more" in errors({"max_batch_size": -1})["max_batch_size"][0]


def test_max_batch_size_cannot_turn_batching_on_for_a_model_registered_without_it():
    assert "batch dimension" in errors({"max_batch_size": 4}, model=NO_BATCH)["max_batch_size"][0]
    assert validate_spec({"max_batch_size": 0}, model=NO_BATCH)["max_batch_size"] == 0


def test_max_batch_size_cannot_turn_batching_off_for_a_model_registered_with_it():
    assert "dims exclude the batch dimension" in errors({"max_batch_size": 0})["max_batch_size"][0]


def test_max_batch_size_can_only_lower_the_registered_value():
    assert "at most 8" in errors({"max_batch_size": 16})["max_batch_size"][0]
    assert validate_spec({"max_batch_size": 4}, model=MODEL)["max_batch_size"] == 4


def test_dynamic_batching_needs_max_batch_size_above_zero():
    assert "max_batch_size > 0" in errors({"dynamic_batching": {}}, model=NO_BATCH)["dynamic_batching"][0]


def test_preferred_batch_size_above_max_batch_size_names_the_element():
    found = errors({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [2, 8]}})
    assert list(found) == ["dynamic_batching.preferred_batch_size[1]"]
    assert "larger than max_batch_size (4)" in found["dynamic_batching.preferred_batch_size[1]"][0]


def test_preferred_batch_size_must_be_positive():
    found = errors({"dynamic_batching": {"preferred_batch_size": [0, -2, 4]}})
    assert set(found) == {"dynamic_batching.preferred_batch_size[0]", "dynamic_batching.preferred_batch_size[1]"}


def test_preferred_batch_size_must_not_repeat():
    found = errors({"dynamic_batching": {"preferred_batch_size": [4, 2, 4]}})
    assert found == {"dynamic_batching.preferred_batch_size[2]": ["4 is listed twice."]}


def test_max_queue_delay_must_be_a_non_negative_uint64():
    assert "dynamic_batching.max_queue_delay_microseconds" in errors({"dynamic_batching": {"max_queue_delay_microseconds": -1}})
    assert "dynamic_batching.max_queue_delay_microseconds" in errors({"dynamic_batching": {"max_queue_delay_microseconds": 2**64}})
    big = validate_spec({"dynamic_batching": {"max_queue_delay_microseconds": 2**64 - 1}}, model=MODEL)
    assert big["dynamic_batching"]["max_queue_delay_microseconds"] == 2**64 - 1


def test_priority_levels_must_not_be_negative():
    assert "dynamic_batching.priority_levels" in errors({"dynamic_batching": {"priority_levels": -1}})


@pytest.mark.parametrize("default", [0, 4])
def test_default_priority_level_must_be_within_the_levels(default):
    found = errors({"dynamic_batching": {"priority_levels": 3, "default_priority_level": default}})
    assert "between 1 and priority_levels (3)" in found["dynamic_batching.default_priority_level"][0]


def test_default_priority_level_needs_priority_levels():
    found = errors({"dynamic_batching": {"default_priority_level": 1}})
    assert "Set priority_levels first" in found["dynamic_batching.default_priority_level"][0]
    spec = validate_spec({"dynamic_batching": {"priority_levels": 3, "default_priority_level": 3}}, model=MODEL)
    assert spec["dynamic_batching"]["default_priority_level"] == 3


@pytest.mark.parametrize("action", ["DROP", "delay", ""])
def test_queue_policy_timeout_action_is_reject_or_delay(action):
    path = "dynamic_batching.default_queue_policy.timeout_action"
    assert path in errors({"dynamic_batching": {"default_queue_policy": {"timeout_action": action}}})


@pytest.mark.parametrize("field, value", [
    ("default_timeout_microseconds", -1), ("default_timeout_microseconds", 2**64),
    ("max_queue_size", -1), ("max_queue_size", 2**32),  # uint32 in model_config.proto
])
def test_queue_policy_numbers_are_non_negative_and_in_range(field, value):
    path = f"dynamic_batching.default_queue_policy.{field}"
    assert path in errors({"dynamic_batching": {"default_queue_policy": {field: value}}})


def test_instance_group_kind_must_be_a_triton_kind():
    assert "KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL" in errors({"instance_group": [{"kind": "CPU"}]})["instance_group[0].kind"][0]


@pytest.mark.parametrize("count", [0, -1])
def test_instance_group_count_below_one_is_refused(count):
    assert "instance_group[1].count" in errors({"instance_group": [{"kind": "KIND_CPU"}, {"kind": "KIND_CPU", "count": count}]})


def test_instance_group_count_has_a_ceiling():
    assert "instance_group[0].count" in errors({"instance_group": [{"kind": "KIND_CPU", "count": MAX_INSTANCE_COUNT + 1}]})


def test_instance_group_defaults_are_kind_auto_count_one():
    assert validate_spec({"instance_group": [{}]}, model=MODEL)["instance_group"] == [{"kind": "KIND_AUTO", "count": 1, "gpus": []}]
    assert "instance_group" not in validate_spec({"instance_group": []}, model=MODEL)


def test_instance_group_gpus_are_unique_non_negative_ints():
    found = errors({"instance_group": [{"kind": "KIND_GPU", "gpus": [-1, 0, 0]}]})
    assert set(found) == {"instance_group[0].gpus[0]", "instance_group[0].gpus[2]"}


@pytest.mark.parametrize("kind", ["KIND_CPU", "KIND_MODEL"])
def test_gpus_are_refused_with_cpu_and_model_kinds(kind):
    assert "cannot list GPUs" in errors({"instance_group": [{"kind": kind, "gpus": [0]}]})["instance_group[0].gpus"][0]


@pytest.mark.parametrize("kind", ["KIND_GPU", "KIND_AUTO"])
def test_gpus_are_allowed_with_gpu_and_auto_kinds(kind):
    spec = validate_spec({"instance_group": [{"kind": kind, "count": 2, "gpus": [1, 0]}]}, model=unsaved_model(backend="onnxruntime"))
    assert spec["instance_group"] == [{"kind": kind, "count": 2, "gpus": [1, 0]}]


def test_kind_gpu_is_refused_on_a_pool_without_gpus():
    onnx = unsaved_model(backend="onnxruntime")
    spec = {"instance_group": [{"kind": "KIND_GPU"}]}
    found = errors(spec, model=onnx, pool_has_gpus=False)
    assert "this pool has none" in found["instance_group[0].kind"][0]
    assert validate_spec(spec, model=onnx, pool_has_gpus=True)["instance_group"][0]["kind"] == "KIND_GPU"
    assert validate_spec(spec, model=onnx)["instance_group"][0]["kind"] == "KIND_GPU"  # pool unknown
    assert validate_spec({"instance_group": [{"kind": "KIND_AUTO"}]}, model=onnx, pool_has_gpus=False)


def test_python_backend_kind_gpu_on_a_cpu_only_pool_points_at_kind_cpu():
    found = errors({"instance_group": [{"kind": "KIND_GPU", "count": 1}]}, pool_has_gpus=False)
    assert "python backend runs on CPU: use KIND_CPU" in found["instance_group[0].kind"][0]


def test_tensorrt_refuses_kind_cpu():
    assert "TensorRT" in errors({"instance_group": [{"kind": "KIND_CPU"}]}, model=TENSORRT)["instance_group[0].kind"][0]


@pytest.mark.parametrize("policy", [{}, {"latest": {}, "all": {}}])
def test_version_policy_is_exactly_one_choice(policy):
    assert "exactly one" in errors({"version_policy": policy})["version_policy"][0]


def test_unknown_version_policy_is_one_error():
    assert errors({"version_policy": {"newest": {}}}) == {
        "version_policy.newest": ["Unknown field. Allowed here: latest, all, specific."]}


def test_version_policy_latest_needs_at_least_one_version():
    assert "version_policy.latest.num_versions" in errors({"version_policy": {"latest": {"num_versions": 0}}})
    assert validate_spec({"version_policy": {"latest": {}}}, model=MODEL)["version_policy"] == {"latest": {"num_versions": 1}}


def test_version_policy_all_takes_no_fields():
    assert "version_policy.all.versions" in errors({"version_policy": {"all": {"versions": [1]}}})
    assert validate_spec({"version_policy": {"all": {}}}, model=MODEL)["version_policy"] == {"all": {}}


@pytest.mark.parametrize("body, path", [
    ({}, "version_policy.specific.versions"),
    ({"versions": []}, "version_policy.specific.versions"),
    ({"versions": [1, 0]}, "version_policy.specific.versions[1]"),
    ({"versions": [2, 2]}, "version_policy.specific.versions[1]"),
    ({"versions": ["1"]}, "version_policy.specific.versions[0]"),
])
def test_version_policy_specific_needs_positive_unique_versions(body, path):
    assert path in errors({"version_policy": {"specific": body}})


def test_warmup_sample_needs_a_unique_name():
    assert "model_warmup[0].name" in errors({"model_warmup": [{**WARM, "name": ""}]})
    assert "model_warmup[1].name" in errors({"model_warmup": [WARM, WARM]})


@pytest.mark.parametrize("batch_size, words", [(0, "1 or more"), (9, "at most max_batch_size (8)")])
def test_warmup_batch_size_is_between_one_and_max_batch_size(batch_size, words):
    assert words in errors({"model_warmup": [{**WARM, "batch_size": batch_size}]})["model_warmup[0].batch_size"][0]


def test_warmup_batch_size_follows_a_lowered_max_batch_size_and_is_required():
    assert "model_warmup[0].batch_size" in errors({"max_batch_size": 2, "model_warmup": [{**WARM, "batch_size": 4}]})
    sample = {key: value for key, value in WARM.items() if key != "batch_size"}
    assert "model_warmup[0].batch_size" in errors({"model_warmup": [sample]})


def test_warmup_batch_size_is_one_for_a_model_without_batching():
    sample = {**WARM, "inputs": {"INPUT0": {"zero_data": True}}}
    assert "does not batch" in errors({"model_warmup": [{**sample, "batch_size": 2}]}, model=NO_BATCH)["model_warmup[0].batch_size"][0]
    assert validate_spec({"model_warmup": [sample]}, model=NO_BATCH)["model_warmup"][0]["inputs"]["INPUT0"]["dims"] == [1, 4]


def test_warmup_inputs_are_keyed_by_the_models_input_names():
    found = errors({"model_warmup": [{**WARM, "inputs": {"INPUT1": {"zero_data": True}}}]})
    assert "its inputs are INPUT0" in found["model_warmup[0].inputs.INPUT1"][0]
    assert "missing: INPUT0" in found["model_warmup[0].inputs"][0]


def test_warmup_input_data_type_must_match_the_model():
    path = "model_warmup[0].inputs.INPUT0.data_type"
    assert "Must be TYPE_FP32" in errors({"model_warmup": [{**WARM, "inputs": {"INPUT0": {"data_type": "TYPE_INT32", "zero_data": True}}}]})[path][0]
    assert path in errors({"model_warmup": [{**WARM, "inputs": {"INPUT0": {"data_type": "FLOAT", "zero_data": True}}}]})
    ok = validate_spec({"model_warmup": [{**WARM, "inputs": {"INPUT0": {"data_type": "FP32", "zero_data": True}}}]}, model=MODEL)
    assert ok["model_warmup"][0]["inputs"]["INPUT0"]["data_type"] == "TYPE_FP32"


@pytest.mark.parametrize("dims, path", [([5], "dims"), ([4, 1], "dims"), ([0], "dims[0]"), ("4", "dims")])
def test_warmup_dims_must_match_the_input_shape(dims, path):
    found = errors({"model_warmup": [{**WARM, "inputs": {"INPUT0": {"dims": dims, "zero_data": True}}}]})
    assert list(found) == [f"model_warmup[0].inputs.INPUT0.{path}"]


def test_warmup_dims_fill_variable_dimensions():
    sample = {"name": "w", "batch_size": 1, "inputs": {"TOKENS": {"random_data": True}}}
    assert "variable (-1)" in errors({"model_warmup": [sample]}, model=VARIABLE)["model_warmup[0].inputs.TOKENS.dims"][0]
    sample["inputs"]["TOKENS"]["dims"] = [32, 16]
    assert validate_spec({"model_warmup": [sample]}, model=VARIABLE)["model_warmup"][0]["inputs"]["TOKENS"]["dims"] == [32, 16]
    sample["inputs"]["TOKENS"]["dims"] = [32, 8]
    assert "model_warmup[0].inputs.TOKENS.dims" in errors({"model_warmup": [sample]}, model=VARIABLE)


@pytest.mark.parametrize("data, path", [
    ({}, "model_warmup[0].inputs.INPUT0"),
    ({"zero_data": True, "random_data": True}, "model_warmup[0].inputs.INPUT0"),
    ({"zero_data": False}, "model_warmup[0].inputs.INPUT0.zero_data"),
])
def test_warmup_input_takes_exactly_one_of_zero_or_random_data(data, path):
    assert path in errors({"model_warmup": [{**WARM, "inputs": {"INPUT0": data}}]})


def test_warmup_count_is_a_non_negative_uint32():
    assert "model_warmup[0].count" in errors({"model_warmup": [{**WARM, "count": -1}]})


def test_all_problems_are_reported_at_once():
    found = errors({
        "max_batch_size": 4,
        "dynamic_batching": {"preferred_batch_size": [16], "priority_levels": 2},
        "instance_group": [{"kind": "KIND_CPU", "count": 0}],
        "extra": 1,
    })
    assert set(found) == {
        "dynamic_batching.preferred_batch_size[0]", "dynamic_batching.default_priority_level",
        "instance_group[0].count", "extra",
    }
