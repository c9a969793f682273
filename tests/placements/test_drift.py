"""Drift classification and config comparison (pure). The effective config below is what
tritonserver 2.51 returned for a config we sent (seen in our Triton checks)."""
import copy

from controlplane.placements.drift import classify, config_differences, extras

OURS = {
    "name": "vision.fraud-scorer", "backend": "python", "max_batch_size": 8,
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
    "version_policy": {"specific": {"versions": [1]}},
    "instance_group": [{"kind": "KIND_AUTO", "count": 1}],
}
EFFECTIVE = {
    "name": "vision.fraud-scorer", "platform": "", "backend": "python", "runtime": "",
    "version_policy": {"specific": {"versions": [1]}}, "max_batch_size": 8,
    "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [4], "is_shape_tensor": False,
               "allow_ragged_batch": False, "optional": False, "is_non_linear_format_io": False}],
    "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4], "label_filename": "", "is_shape_tensor": False,
                "is_non_linear_format_io": False}],
    "batch_input": [], "batch_output": [],
    "optimization": {"priority": "PRIORITY_DEFAULT", "input_pinned_memory": {"enable": True}},
    "instance_group": [{"name": "vision.fraud-scorer_0", "kind": "KIND_CPU", "count": 1, "gpus": [], "secondary_devices": [],
                        "profile": [], "passive": False, "host_policy": ""}],
    "default_model_filename": "model.py", "cc_model_filenames": {}, "metric_tags": {}, "parameters": {}, "model_warmup": [],
}


def ready(*versions, state="READY"):
    return [{"name": "vision.fraud-scorer", "version": str(v), "state": state, "reason": None} for v in versions]


def test_our_config_matches_what_triton_fills_in():
    assert config_differences(OURS, EFFECTIVE) == []
    assert classify(versions=[1], config=OURS, rows=ready(1), effective=EFFECTIVE) == ("", "")


def test_a_changed_owned_field_is_wrong_config_with_both_values():
    effective = copy.deepcopy(EFFECTIVE) | {"max_batch_size": 4}
    assert classify(versions=[1], config=OURS, rows=ready(1), effective=effective) == (
        "wrong_config", "max_batch_size: ours 8, server has 4")


def test_64_bit_integers_printed_as_strings_still_match():
    ours = OURS | {"dynamic_batching": {"max_queue_delay_microseconds": 100}}
    effective = EFFECTIVE | {"dynamic_batching": {"max_queue_delay_microseconds": "100", "preserve_ordering": False}}
    assert config_differences(ours, effective) == []
    effective["dynamic_batching"]["max_queue_delay_microseconds"] = "250"
    assert config_differences(ours, effective) == ["dynamic_batching.max_queue_delay_microseconds: ours 100, server has \"250\""]


def test_batching_on_the_server_that_we_did_not_ask_for_is_drift():
    effective = EFFECTIVE | {"dynamic_batching": {"max_queue_delay_microseconds": 100}}
    value, detail = classify(versions=[1], config=OURS, rows=ready(1), effective=effective)
    assert value == "wrong_config" and detail.startswith("dynamic_batching: not in ours")


def test_kind_auto_matches_the_device_triton_chose_but_a_fixed_kind_must_match():
    ours = OURS | {"instance_group": [{"kind": "KIND_GPU", "count": 1}]}
    assert config_differences(ours, EFFECTIVE) == ['instance_group[0].kind: ours "KIND_GPU", server has "KIND_CPU"']
    ours = OURS | {"instance_group": [{"kind": "KIND_CPU", "count": 2}]}
    assert config_differences(ours, EFFECTIVE) == ["instance_group[0].count: ours 2, server has 1"]


def test_missing_when_nothing_is_ready_with_the_reason():
    rows = [{"name": "vision.fraud-scorer", "version": "1", "state": "UNAVAILABLE", "reason": "Internal: boom\nAt: x"}]
    assert classify(versions=[1], config=OURS, rows=rows, effective=None) == ("missing", "v1 UNAVAILABLE (Internal: boom)")
    restarted = [{"name": "vision.fraud-scorer", "version": None, "state": None, "reason": None}]
    assert classify(versions=[1], config=OURS, rows=restarted, effective=None) == ("missing", "not loaded")


def test_wrong_version_when_the_ready_set_differs():
    value, detail = classify(versions=[1], config=OURS, rows=ready(2), effective=EFFECTIVE)
    assert (value, detail) == ("wrong_version", "READY v2, wanted v1; v2 READY")
    value, _ = classify(versions=[1], config=OURS, rows=ready(1, 2), effective=EFFECTIVE)
    assert value == "wrong_version"


def test_extras_are_loaded_models_nobody_wants():
    index = ready(1) + [
        {"name": "vision.other", "version": "3", "state": "READY", "reason": None},
        {"name": "vision.gone", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "vision.never", "version": None, "state": None, "reason": None},
    ]
    assert extras(index, {"vision.fraud-scorer"}) == [{"model": "vision.other", "versions": "v3 READY"}]
