"""devices_for_instance_groups: the GPU indexes a Triton instance_group occupies. No database."""
import copy
import itertools

import pytest
from django.core.exceptions import ValidationError

from controlplane.quotas.instance_groups import devices_for_instance_groups

KINDS = ["KIND_GPU", "KIND_CPU", "KIND_AUTO", "KIND_MODEL", None]  # None: kind left out
COUNTS = [None, 0, 1, 2, 7]  # None: count left out
GPU_LISTS = [None, [], [0], [0, 1], [1, 3], [3, 1, 3], [1, 3, 5, 7]]  # None: gpus left out
SERVER_GPUS = [0, 1, 4, 8]


def group(kind, count, gpus):
    g = {"name": "g"}
    if kind is not None:
        g["kind"] = kind
    if count is not None:
        g["count"] = count
    if gpus is not None:
        g["gpus"] = gpus
    return g


def devices(groups, gpu_count, name="gpu-1"):
    return devices_for_instance_groups(groups, server_gpu_count=gpu_count, server_name=name)


# What each kind resolves to, stated as a table rather than re-derived (Triton's NormalizeInstanceGroup):
# on a server with GPUs / without.
RESOLVES = {
    "KIND_GPU": ("gpu", "refused"),  # Triton refuses KIND_GPU where there is no GPU
    "KIND_CPU": ("cpu", "cpu"),
    "KIND_AUTO": ("gpu", "cpu"),
    "KIND_MODEL": ("gpu", "cpu"),  # the model picks its GPU: counted as KIND_AUTO
    None: ("gpu", "cpu"),  # a missing kind is KIND_AUTO
}


def expected(kind, gpus, gpu_count):
    """The oracle: a set of indexes, or the field of the ValidationError."""
    resolved = RESOLVES[kind][0 if gpu_count else 1]
    if resolved == "refused":
        return "instance_group[0].kind"
    if resolved == "cpu":
        return frozenset()
    listed = set(gpus or [])
    if any(g >= gpu_count for g in listed):
        return "instance_group[0].gpus"
    return frozenset(listed) if listed else frozenset(range(gpu_count))  # no list: every GPU of the server


@pytest.mark.parametrize("kind,count,gpus,gpu_count", list(itertools.product(KINDS, COUNTS, GPU_LISTS, SERVER_GPUS)))
def test_every_combination_of_one_group(kind, count, gpus, gpu_count):
    want = expected(kind, gpus, gpu_count)
    if isinstance(want, str):
        with pytest.raises(ValidationError) as caught:
            devices([group(kind, count, gpus)], gpu_count)
        assert list(caught.value.message_dict) == [want]
    else:
        assert devices([group(kind, count, gpus)], gpu_count) == want


@pytest.mark.parametrize(
    "groups,gpu_count,expected_devices",
    [
        # KIND_GPU without gpus: Triton spreads it over every GPU of the server
        ([{"kind": "KIND_GPU"}], 4, {0, 1, 2, 3}),
        ([{"kind": "KIND_GPU", "count": 4}], 4, {0, 1, 2, 3}),
        ([{"kind": "KIND_GPU", "count": 1}], 1, {0}),
        ([{"kind": "KIND_GPU", "count": 2, "gpus": [0, 2]}], 4, {0, 2}),
        ([{"kind": "KIND_CPU", "count": 16}], 8, set()),
        ([{"kind": "KIND_AUTO", "count": 3}], 2, {0, 1}),
        ([{"kind": "KIND_AUTO", "count": 3}], 0, set()),
        ([{"kind": "KIND_AUTO", "gpus": [5]}], 0, set()),  # no GPUs: Triton runs it on CPU, whatever it lists
        ([{"kind": "KIND_MODEL", "count": 2}], 8, set(range(8))),
        ([{"kind": "KIND_MODEL", "count": 2}], 0, set()),
        # groups on the same GPUs take them once; CPU groups beside GPU ones take nothing
        ([{"kind": "KIND_GPU", "gpus": [0]}, {"kind": "KIND_GPU", "count": 2, "gpus": [0, 1]},
          {"kind": "KIND_CPU", "count": 8}], 8, {0, 1}),
        ([{"kind": "KIND_GPU", "gpus": [1]}, {"kind": "KIND_AUTO", "count": 2}], 4, {0, 1, 2, 3}),
        ([{"kind": "KIND_GPU", "gpus": [3]}, {"kind": "KIND_AUTO", "gpus": [1]}], 4, {1, 3}),
        ([{"count": 2, "gpus": [0, 1], "passive": True, "profile": ["a"], "host_policy": "x"}], 8, {0, 1}),
    ],
)
def test_examples(groups, gpu_count, expected_devices):
    assert devices(groups, gpu_count) == frozenset(expected_devices)


@pytest.mark.parametrize("groups", [[], None])
def test_no_instance_group_is_tritons_default_of_one_auto_group_on_every_gpu(groups):
    assert devices(groups, 4) == {0, 1, 2, 3}
    assert devices(groups, 0) == frozenset()


def test_the_count_and_the_order_of_gpus_do_not_matter():
    answers = {devices([{"kind": "KIND_GPU", "count": n, "gpus": g}], 8) for n in (0, 1, 5) for g in ([2, 0], [0, 2], [2, 2, 0])}
    assert answers == {frozenset({0, 2})}


def test_the_answer_is_a_frozenset():
    assert isinstance(devices([{"kind": "KIND_GPU"}], 2), frozenset)


def test_the_input_is_not_changed():
    groups = [{"kind": "KIND_GPU", "count": 0}, {}]
    before = copy.deepcopy(groups)
    devices(groups, 4)
    assert groups == before


def test_an_index_the_server_lacks_is_refused_naming_the_field_and_the_server():
    with pytest.raises(ValidationError) as caught:
        devices([{"kind": "KIND_CPU"}, {"kind": "KIND_GPU", "gpus": [0, 4, 6]}], 4, name="gpu-7")
    assert caught.value.message_dict == {"instance_group[1].gpus": ["gpu-7 has no GPUs 4, 6: it has 4 GPUs, indexes 0 to 3."]}
    with pytest.raises(ValidationError) as caught:
        devices([{"kind": "KIND_AUTO", "gpus": [1]}], 1, name="gpu-7")
    assert caught.value.message_dict == {"instance_group[0].gpus": ["gpu-7 has no GPU 1: it has 1 GPU, index 0."]}
    with pytest.raises(ValidationError) as caught:
        devices_for_instance_groups([{"kind": "KIND_GPU", "gpus": [2]}], server_gpu_count=2)
    assert "the server has no GPU 2" in caught.value.message_dict["instance_group[0].gpus"][0]


def test_kind_gpu_on_a_server_without_gpus_is_refused():
    with pytest.raises(ValidationError) as caught:
        devices([{"kind": "KIND_GPU"}], 0, name="cpu-1")
    assert caught.value.message_dict == {
        "instance_group[0].kind": ["KIND_GPU needs a GPU, and cpu-1 has none; Triton would refuse to load it."]
    }


@pytest.mark.parametrize("gpu_count", [-1, None, 1.0, True, "4"])
def test_a_bad_gpu_count_is_a_programming_error(gpu_count):
    with pytest.raises(ValueError):
        devices_for_instance_groups([], server_gpu_count=gpu_count)


@pytest.mark.parametrize(
    "groups,field",
    [
        ({"kind": "KIND_GPU"}, "instance_group"),
        ("KIND_GPU", "instance_group"),
        (["KIND_GPU"], "instance_group[0]"),
        ([{"kind": "KIND_GPU"}, {"kind": "KIND_TPU"}], "instance_group[1].kind"),
        ([{"kind": "kind_gpu"}], "instance_group[0].kind"),
        ([{"kind": 1}], "instance_group[0].kind"),
        ([{"count": -1}], "instance_group[0].count"),
        ([{"count": "2"}], "instance_group[0].count"),
        ([{"count": 1.5}], "instance_group[0].count"),
        ([{"count": True}], "instance_group[0].count"),
        ([{"gpus": 0}], "instance_group[0].gpus"),
        ([{"gpus": [0, -1]}], "instance_group[0].gpus"),
        ([{"gpus": ["0"]}], "instance_group[0].gpus"),
        ([{"gpus": [False]}], "instance_group[0].gpus"),
        ([{"kind": "KIND_CPU", "gpus": [None]}], "instance_group[0].gpus"),  # malformed is refused even on CPU
    ],
)
def test_malformed_groups_are_refused_naming_the_field(groups, field):
    with pytest.raises(ValidationError) as caught:
        devices(groups, 8)
    assert list(caught.value.message_dict) == [field]
