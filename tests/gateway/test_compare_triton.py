"""gateway.compare on answers captured from a real tritonserver, in JSON and in binary tensors.

One Python-backend model returns every datatype compare_outputs decodes, computed from its FP32
input, so the same request asked twice (once with `binary_data_output`) must agree, and a different
input must not. Seen here: Triton refuses FP16 in JSON ("sending FP16 data via JSON is not
supported"), so a "JSON" answer with FP16 is always a mix: FP16 binary, the rest JSON.
"""
import json
import urllib.error
import urllib.request

import pytest

from gateway.compare import compare_outputs

pytestmark = pytest.mark.integration

MODEL = "compare_all"
TOL = {"rtol": 1e-5, "atol": 1e-6}

OUTPUTS = {
    "OUT_FP16": ("TYPE_FP16", "np.float16"), "OUT_FP32": ("TYPE_FP32", "np.float32"),
    "OUT_FP64": ("TYPE_FP64", "np.float64"), "OUT_INT8": ("TYPE_INT8", "np.int8"),
    "OUT_INT16": ("TYPE_INT16", "np.int16"), "OUT_INT32": ("TYPE_INT32", "np.int32"),
    "OUT_INT64": ("TYPE_INT64", "np.int64"), "OUT_UINT8": ("TYPE_UINT8", "np.uint8"),
    "OUT_UINT16": ("TYPE_UINT16", "np.uint16"), "OUT_UINT32": ("TYPE_UINT32", "np.uint32"),
    "OUT_UINT64": ("TYPE_UINT64", "np.uint64"), "OUT_BOOL": ("TYPE_BOOL", "np.bool_"),
    "OUT_BYTES": ("TYPE_STRING", "np.object_"),
}

MODEL_PY = '''
import numpy as np
import triton_python_backend_utils as pb_utils

CASTS = {casts}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            tensors = []
            for name, dtype in CASTS.items():
                if name == "OUT_BOOL":
                    y = x > 0
                elif name == "OUT_BYTES":
                    y = np.array([("%g" % v).encode() for v in x], dtype=np.object_)
                elif name.startswith("OUT_UINT"):
                    y = np.abs(x).astype(getattr(np, dtype[3:]))
                else:
                    y = x.astype(getattr(np, dtype[3:])) * (2 if name.startswith("OUT_FP") else 1)
                tensors.append(pb_utils.Tensor(name, y))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [
{outputs}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from controlplane.devstack import triton as devstack  # a missing tritonserver fails loudly

    root = tmp_path_factory.mktemp("compare-triton")
    model_dir = root / "repo" / MODEL / "1"
    model_dir.mkdir(parents=True)
    casts = {name: np_type for name, (_, np_type) in OUTPUTS.items()}
    (model_dir / "model.py").write_text(MODEL_PY.format(casts=repr(casts)))
    outputs = ",\n".join(f'  {{ name: "{n}" data_type: {t} dims: [ 4 ] }}' for n, (t, _) in OUTPUTS.items())
    (root / "repo" / MODEL / "config.pbtxt").write_text(CONFIG.format(name=MODEL, outputs=outputs))
    server = devstack.start_triton_server(name="compare", repository=str(root / "repo"), s3=None,
                                          work_dir=root / "work", extra_args=[f"--load-model={MODEL}"])
    try:
        yield server.http_url
    finally:
        server.stop()


def infer(url, data, *, binary, outputs=None, input_name="INPUT0", encoding=None):
    """POST one request; return (body, header length or None) exactly as Triton answered.
    `binary`: True (every output binary), False (JSON; FP16 only binary) or a set of output names."""
    request = {"inputs": [{"name": input_name, "shape": [4], "datatype": "FP32", "data": data}]}
    if binary is True and outputs is None:
        request["parameters"] = {"binary_data_output": True}
    else:
        wanted = binary if isinstance(binary, set) else set(OUTPUTS) if binary else {"OUT_FP16"}
        request["outputs"] = [{"name": n, "parameters": {"binary_data": n in wanted}} for n in outputs or OUTPUTS]
    req = urllib.request.Request(f"{url}/v2/models/{MODEL}/infer", data=json.dumps(request).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Accept-Encoding": encoding} if encoding else {})}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body, headers = resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        body, headers = e.read(), e.headers
    assert headers.get("Content-Encoding") == encoding
    length = headers.get("Inference-Header-Content-Length")
    return body, None if length is None else int(length)


X = [1.5, -2.25, 3.0, 100.0]


def test_real_fp16_is_never_json(triton):
    body, _ = infer(triton, X, binary=set(), outputs=["OUT_FP16"])
    assert b"FP16 data via JSON is not supported" in body


def test_real_json_answer_agrees_with_itself(triton):
    names = [n for n in OUTPUTS if n != "OUT_FP16"]
    text = infer(triton, X, binary=False, outputs=names)
    assert text[1] is None and b'"data"' in text[0]  # all JSON
    assert compare_outputs(*text, *infer(triton, X, binary=False, outputs=names), **TOL) == "agree"
    assert compare_outputs(*text, *infer(triton, X, binary=True, outputs=names), **TOL) == "agree"


def test_real_binary_and_json_answers_agree(triton):
    text = infer(triton, X, binary=False)
    binary = infer(triton, X, binary=True)
    assert binary[1] is not None
    header = json.loads(binary[0][:binary[1]])
    assert {o["name"] for o in header["outputs"]} == set(OUTPUTS)
    assert all("binary_data_size" in o["parameters"] for o in header["outputs"])
    assert compare_outputs(*text, *binary, **TOL) == "agree"
    assert compare_outputs(*binary, *text, **TOL) == "agree"
    assert compare_outputs(*binary, *binary, **TOL) == "agree"


def test_real_mixed_encodings_agree(triton):
    half = set(sorted(OUTPUTS)[::2]) | {"OUT_FP16"}
    mixed_a = infer(triton, X, binary=half)
    mixed_b = infer(triton, X, binary=(set(OUTPUTS) - half) | {"OUT_FP16"})
    assert compare_outputs(*mixed_a, *mixed_b, **TOL) == "agree"


def test_real_different_answers_disagree(triton):
    a = infer(triton, X, binary=True)
    b = infer(triton, [1.5, -2.25, 3.0, 101.0], binary=False)
    assert compare_outputs(*a, *b, **TOL) == "disagree"


def test_real_float_answers_within_tolerance_agree(triton):
    floats = ["OUT_FP32", "OUT_FP64"]
    a = infer(triton, X, binary=True, outputs=floats)
    b = infer(triton, [x * (1 + 1e-6) for x in X], binary=True, outputs=floats)
    assert compare_outputs(*a, *b, **TOL) == "agree"
    assert compare_outputs(*a, *b, rtol=0.0, atol=0.0) == "disagree"


def test_real_error_answer_is_error(triton):
    error = infer(triton, X, binary=False, input_name="NOPE")
    assert b'"error"' in error[0]
    assert compare_outputs(*infer(triton, X, binary=True), *error, **TOL) == "error"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_real_compressed_answers_agree(triton, encoding):
    plain = infer(triton, X, binary=True)
    packed = infer(triton, X, binary=True, encoding=encoding)
    assert packed[0] != plain[0]  # Triton really compressed it
    assert compare_outputs(*packed, *plain, **TOL) == "agree"
    assert compare_outputs(*packed, *infer(triton, X, binary=False, encoding=encoding), **TOL) == "agree"
