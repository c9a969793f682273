import ast
import json

import pytest

from controlplane.devstack.testmodels import (
    TEST_MODEL_INPUTS,
    TEST_MODEL_OUTPUTS,
    python_model_files,
    test_model_config,
)


def _constants(source: bytes) -> dict:
    tree = ast.parse(source)
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }


def test_model_py_compiles_and_carries_its_settings():
    files = python_model_files(version=3, latency_ms=25, failure_rate=0.25)

    assert list(files) == ["model.py"]
    source = files["model.py"]
    compile(source, "model.py", "exec")
    consts = _constants(source)
    assert consts["VERSION"] == 3
    assert consts["FAILURE_RATE"] == 0.25
    assert consts["FAILURE_MODE"] == "raise"
    assert _constants(python_model_files(version=1, failure_mode="error_response")["model.py"])["FAILURE_MODE"] == "error_response"
    assert "LATENCY_S" in source.decode() and "25.0 / 1000.0" in source.decode()
    assert b"class TritonPythonModel" in source and b"def execute(self, requests)" in source


def test_versions_produce_different_sources():
    assert python_model_files(version=1) != python_model_files(version=2)


@pytest.mark.parametrize("kwargs", [
    {"version": 0}, {"version": "1"}, {"version": True},
    {"version": 1, "failure_rate": 1.5}, {"version": 1, "failure_rate": -0.1},
    {"version": 1, "latency_ms": -1}, {"version": 1, "failure_mode": "explode"},
])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        python_model_files(**kwargs)


def test_config_has_the_fields_triton_needs():
    config = test_model_config("fraud-scorer", max_batch_size=16)

    assert config["name"] == "fraud-scorer"
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 16
    assert config["input"] == [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}]
    assert [o["name"] for o in config["output"]] == ["OUTPUT0", "VERSION"]
    assert {o["name"]: o["data_type"] for o in config["output"]} == {"OUTPUT0": "TYPE_FP32", "VERSION": "TYPE_INT32"}
    assert config["instance_group"] == [{"kind": "KIND_CPU", "count": 1}]
    assert json.loads(json.dumps(config)) == config


def test_config_is_a_copy_callers_may_edit():
    config = test_model_config("m")
    config["input"][0]["dims"] = [99]
    assert TEST_MODEL_INPUTS[0]["dims"] == [4]
    assert test_model_config("m")["input"][0]["dims"] == [4]
    assert TEST_MODEL_OUTPUTS[1]["dims"] == [1]
