"""gpus_for_instance_groups: the quota rule for Triton's instance_group. No database."""
import copy
import itertools

import pytest
from django.core.exceptions import ValidationError

from controlplane.quotas.instance_groups import gpus_for_instance_groups

KINDS = ["KIND_GPU", "KIND_CPU", "KIND_AUTO", "KIND_MODEL", None]  # None: kind left out
COUNTS = [None, 0, 1, 2, 7]  # None: count left out
GPU_LISTS = [None, [], [0], [0, 1], [1, 3, 5, 7]]  # None: gpus left out


def group(kind, count, gpus):
    g = {"name": "g"}
    if kind is not None:
        g["kind"] = kind
    if count is not None:
        g["count"] = count
    if gpus is not None:
        g["gpus"] = gpus
    return g


# What each kind does, stated as a table rather than re-derived: does it take GPUs?
ON_GPU = {
    ("KIND_GPU", True): True, ("KIND_GPU", False): True,  # Triton would fail the load; the ask is still counted
    ("KIND_CPU", True): False, ("KIND_CPU", False): False,
    ("KIND_AUTO", True): True, ("KIND_AUTO", False): False,
    ("KIND_MODEL", True): True, ("KIND_MODEL", False): False,
    (None, True): True, (None, False): False,  # missing kind is KIND_AUTO
}
INSTANCES = {None: 1, 0: 1, 1: 1, 2: 2, 7: 7}  # Triton makes a count below 1 into 1
GPUS_PER_INSTANCE = {None: 1, (): 1, (0,): 1, (0, 1): 2, (1, 3, 5, 7): 4}


@pytest.mark.parametrize(
    "kind,count,gpus,has_gpus", list(itertools.product(KINDS, COUNTS, GPU_LISTS, [True, False]))
)
def test_every_combination_of_one_group(kind, count, gpus, has_gpus):
    expected = ON_GPU[kind, has_gpus] * INSTANCES[count] * GPUS_PER_INSTANCE[None if gpus is None else tuple(gpus)]
    assert gpus_for_instance_groups([group(kind, count, gpus)], server_has_gpus=has_gpus) == expected


@pytest.mark.parametrize(
    "groups,has_gpus,expected",
    [
        ([{"kind": "KIND_GPU", "count": 2, "gpus": [0, 1]}], True, 4),
        ([{"kind": "KIND_GPU", "count": 4}], True, 4),
        ([{"kind": "KIND_GPU"}], True, 1),
        ([{"kind": "KIND_CPU", "count": 16}], True, 0),
        ([{"kind": "KIND_AUTO", "count": 3}], True, 3),
        ([{"kind": "KIND_AUTO", "count": 3}], False, 0),
        ([{"kind": "KIND_MODEL", "count": 2, "gpus": [0, 1, 2]}], True, 6),
        ([{"kind": "KIND_MODEL", "count": 2, "gpus": [0, 1, 2]}], False, 0),
        # groups add up; CPU groups beside GPU ones cost nothing
        ([{"kind": "KIND_GPU", "count": 1, "gpus": [0]}, {"kind": "KIND_GPU", "count": 2, "gpus": [1, 2]},
          {"kind": "KIND_CPU", "count": 8}], True, 5),
        ([{"kind": "KIND_GPU", "count": 1}, {"kind": "KIND_AUTO", "count": 2}], False, 1),
        ([{"count": 2, "gpus": [0, 1], "passive": True, "profile": ["a"], "host_policy": "x"}], True, 4),
    ],
)
def test_examples(groups, has_gpus, expected):
    assert gpus_for_instance_groups(groups, server_has_gpus=has_gpus) == expected


@pytest.mark.parametrize("groups", [[], None])
def test_no_instance_group_is_tritons_default_of_one_auto_instance(groups):
    assert gpus_for_instance_groups(groups, server_has_gpus=True) == 1
    assert gpus_for_instance_groups(groups, server_has_gpus=False) == 0


def test_an_unknown_server_is_assumed_to_have_gpus():
    assert gpus_for_instance_groups([{"kind": "KIND_AUTO", "count": 2}]) == 2
    assert gpus_for_instance_groups([]) == 1


def test_the_input_is_not_changed():
    groups = [{"kind": "KIND_GPU", "count": 0}, {}]
    before = copy.deepcopy(groups)
    gpus_for_instance_groups(groups)
    assert groups == before


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
    ],
)
def test_malformed_groups_are_refused_naming_the_field(groups, field):
    with pytest.raises(ValidationError) as caught:
        gpus_for_instance_groups(groups)
    assert list(caught.value.message_dict) == [field]
