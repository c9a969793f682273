from controlplane.serving.diff import spec_diff
from controlplane.serving.validation import validate_spec
from tests.serving.conftest import unsaved_model

MODEL = unsaved_model()


def test_equal_specs_have_no_diff_whatever_the_key_order():
    a = {"max_batch_size": 8, "dynamic_batching": {"priority_levels": 0, "max_queue_delay_microseconds": 0}}
    b = {"dynamic_batching": {"max_queue_delay_microseconds": 0, "priority_levels": 0}, "max_batch_size": 8}
    assert spec_diff(a, b) == []


def test_changed_added_and_removed_leaves_in_spec_order():
    old = validate_spec({"dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 100}}, model=MODEL)
    new = validate_spec({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 500},
                         "instance_group": [{"kind": "KIND_CPU", "count": 2}], "response_cache": {"enable": True}}, model=MODEL)
    assert spec_diff(old, new) == [
        {"path": "max_batch_size", "old": 8, "new": 4},
        {"path": "dynamic_batching.preferred_batch_size", "old": [4, 8], "new": [2, 4]},
        {"path": "dynamic_batching.max_queue_delay_microseconds", "old": 100, "new": 500},
        {"path": "instance_group[0].kind", "old": None, "new": "KIND_CPU"},
        {"path": "instance_group[0].count", "old": None, "new": 2},
        {"path": "instance_group[0].gpus", "old": None, "new": []},
        {"path": "response_cache.enable", "old": False, "new": True},
    ]
    assert spec_diff(new, old)[0] == {"path": "max_batch_size", "old": 4, "new": 8}


def test_turning_dynamic_batching_off_lists_each_removed_field():
    old = validate_spec({"dynamic_batching": {}}, model=MODEL)
    paths = [c["path"] for c in spec_diff(old, validate_spec({}, model=MODEL))]
    assert paths == [
        "dynamic_batching.preferred_batch_size", "dynamic_batching.max_queue_delay_microseconds",
        "dynamic_batching.priority_levels", "dynamic_batching.default_priority_level",
        "dynamic_batching.default_queue_policy.timeout_action",
        "dynamic_batching.default_queue_policy.default_timeout_microseconds",
        "dynamic_batching.default_queue_policy.allow_timeout_override",
        "dynamic_batching.default_queue_policy.max_queue_size",
    ]


def test_version_policy_switch_and_empty_objects():
    assert spec_diff({"version_policy": {"latest": {"num_versions": 1}}}, {"version_policy": {"all": {}}}) == [
        {"path": "version_policy.latest.num_versions", "old": 1, "new": None},
        {"path": "version_policy.all", "old": None, "new": {}},
    ]


def test_a_first_warmup_sample_shows_its_fields_not_an_empty_list():
    old = validate_spec({}, model=MODEL)
    new = validate_spec({"model_warmup": [{"name": "w", "batch_size": 1, "inputs": {"INPUT0": {"zero_data": True}}}]}, model=MODEL)
    assert [c["path"] for c in spec_diff(old, new)] == [
        "model_warmup[0].name", "model_warmup[0].batch_size", "model_warmup[0].count",
        "model_warmup[0].inputs.INPUT0.data_type", "model_warmup[0].inputs.INPUT0.dims",
        "model_warmup[0].inputs.INPUT0.zero_data",
    ]


def test_type_changes_count_even_when_python_compares_equal():
    assert spec_diff({"response_cache": {"enable": True}}, {"response_cache": {"enable": 1}}) == [
        {"path": "response_cache.enable", "old": True, "new": 1},
    ]


def test_none_is_an_empty_spec_and_order_is_deterministic():
    new = {"version_policy": {"specific": {"versions": [1]}}, "max_batch_size": 2, "instance_group": [{"count": 1}, {"count": 3}]}
    first = spec_diff(None, new)
    assert first == spec_diff({}, dict(reversed(list(new.items()))))
    assert [c["path"] for c in first] == ["max_batch_size", "instance_group[0].count", "instance_group[1].count",
                                          "version_policy.specific.versions"]
