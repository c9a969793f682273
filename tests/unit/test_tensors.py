import pytest
from django.core.exceptions import ValidationError

from controlplane.registry.tensors import normalize_tensors


def test_normalizes_short_data_types():
    out = normalize_tensors([{"name": "x", "data_type": "fp32", "dims": [-1, 3]}], "inputs")
    assert out == [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 3]}]


@pytest.mark.parametrize(
    "value, field",
    [
        ([], "inputs"),
        ("INPUT0", "inputs"),
        ([{"name": "x", "data_type": "TYPE_FP33", "dims": [1]}], "inputs[0].data_type"),
        ([{"name": "x", "data_type": "TYPE_FP32", "dims": [0]}], "inputs[0].dims"),
        ([{"name": "x", "data_type": "TYPE_FP32", "dims": []}], "inputs[0].dims"),
        ([{"name": "x", "data_type": "TYPE_FP32", "dims": [True]}], "inputs[0].dims"),
        ([{"name": "x", "data_type": "TYPE_FP32", "dims": ["4"]}], "inputs[0].dims"),
        ([{"name": "bad name", "data_type": "TYPE_FP32", "dims": [1]}], "inputs[0].name"),
        ([{"name": "x", "data_type": "TYPE_FP32", "dims": [1], "shape": [1]}], "inputs[0]"),
        ([{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}, {"name": "x", "data_type": "TYPE_FP32", "dims": [1]}], "inputs[1].name"),
    ],
)
def test_rejects_bad_tensors_naming_the_field(value, field):
    with pytest.raises(ValidationError) as info:
        normalize_tensors(value, "inputs")
    assert field in info.value.message_dict
