"""gateway.compare: shadow answers against the primary's, in JSON and in binary tensors.

Responses are made with tritonclient's own encoder: a request body built by
InferenceServerClient.generate_request_body has exactly a response's layout (a JSON header whose
tensors carry `parameters.binary_data_size`, then the raw tensors in order), so renaming its
"inputs" to "outputs" gives the bytes Triton sends. tritonclient's InferResult reads each one back
as a check. test_compare_triton.py does the same against a real tritonserver.
"""
import json

import numpy as np
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferResult

from gateway.compare import compare_outputs

TOL = {"rtol": 1e-5, "atol": 1e-6}

DATATYPES = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


def sample(datatype, shape=(2, 3), seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if datatype == "BOOL":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    if datatype == "BYTES":
        return np.array([f"tok-{i}-é".encode() for i in range(n)], dtype=object).reshape(shape)
    dtype = np.dtype(DATATYPES[datatype])
    if dtype.kind == "f":
        return (rng.standard_normal(n) * 10).astype(dtype).reshape(shape)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True).reshape(shape)


def response(outputs, binary=True):
    """Bytes and header length of a Triton inference response with `outputs`: {name: (datatype, array)}.
    `binary` is True, False, or the set of output names to send as binary tensors."""
    inputs = []
    for name, (datatype, array) in outputs.items():
        tensor = InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary is True or (binary is not False and name in binary))
        inputs.append(tensor)
    body, json_size = InferenceServerClient.generate_request_body(inputs)
    header = json.loads(body if json_size is None else body[:json_size])
    out = {"model_name": "vision.fraud-scorer", "model_version": "3", "outputs": header["inputs"]}
    head = json.dumps(out).encode()
    if json_size is None:
        return head, None
    return head + body[json_size:], len(head)


def compare(a, b, **tol):
    return compare_outputs(a[0], a[1], b[0], b[1], **(tol or TOL))


def one(datatype, array, name="OUTPUT0", binary=True):
    return response({name: (datatype, array)}, binary=binary)


# -- the fabricated responses are what tritonclient reads ------------------------------------------

@pytest.mark.parametrize("datatype", sorted(DATATYPES))
@pytest.mark.parametrize("binary", [True, False])
def test_fabricated_response_reads_back_with_tritonclient(datatype, binary):
    array = sample(datatype)
    body, header_length = one(datatype, array, binary=binary)
    result = InferResult.from_response_body(body, header_length=header_length)
    got = result.as_numpy("OUTPUT0")
    if datatype == "BYTES":
        assert [bytes(x) if not isinstance(x, str) else x.encode() for x in got.ravel()] == list(array.ravel())
    else:
        np.testing.assert_array_equal(got, array)


# -- agreement ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_same_tensor_agrees_in_every_encoding(datatype):
    array = sample(datatype)
    binary, text = one(datatype, array), one(datatype, array, binary=False)
    assert compare(binary, binary) == "agree"
    assert compare(text, text) == "agree"
    assert compare(binary, text) == "agree"
    assert compare(text, binary) == "agree"


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_different_tensor_disagrees_in_every_encoding(datatype):
    a = sample(datatype)
    b = a.copy()
    if datatype == "BYTES":
        b.flat[4] = b"other"
    elif datatype == "BOOL":
        b.flat[4] = not b.flat[4]
    else:
        b.flat[4] = b.flat[4] // 2 + 1 if np.dtype(DATATYPES[datatype]).kind in "iu" else b.flat[4] * 2 + 1
    for enc_a in (True, False):
        for enc_b in (True, False):
            assert compare(one(datatype, a, binary=enc_a), one(datatype, b, binary=enc_b)) == "disagree"


def test_several_outputs_compare_by_name_whatever_the_order_and_encoding():
    x, v = sample("FP32", (1, 4)), np.array([[3]], dtype=np.int32)
    a = response({"OUTPUT0": ("FP32", x), "VERSION": ("INT32", v)}, binary=True)
    b = response({"VERSION": ("INT32", v), "OUTPUT0": ("FP32", x)}, binary={"VERSION"})
    assert compare(a, b) == "agree"
    b = response({"VERSION": ("INT32", v + 1), "OUTPUT0": ("FP32", x)}, binary={"OUTPUT0"})
    assert compare(a, b) == "disagree"


def test_float_tolerance():
    a = np.array([1.0, 100.0, 0.0], dtype=np.float32)
    assert compare(one("FP32", a), one("FP32", a * (1 + 5e-6))) == "agree"
    assert compare(one("FP32", a), one("FP32", a * (1 + 5e-4))) == "disagree"
    assert compare(one("FP32", a), one("FP32", a * (1 + 5e-4)), rtol=1e-3, atol=0.0) == "agree"
    assert compare(one("FP32", a), one("FP32", a + 1e-7)) == "agree"
    assert compare(one("FP32", a), one("FP32", a + 1e-3)) == "disagree"


def test_fp16_tolerance_is_not_rounded_to_fp16():
    a = np.array([1.0], dtype=np.float16)
    b = np.array([1.0009765625], dtype=np.float16)  # the next FP16 after 1.0
    assert compare(one("FP16", a), one("FP16", b), rtol=0.0, atol=1e-3) == "agree"
    assert compare(one("FP16", a), one("FP16", b), rtol=0.0, atol=9e-4) == "disagree"


def test_nan_agrees_only_with_nan_in_the_same_place():
    a = np.array([1.0, np.nan], dtype=np.float32)
    assert compare(one("FP32", a), one("FP32", a.copy())) == "agree"
    assert compare(one("FP32", a), one("FP32", np.array([1.0, 0.0], dtype=np.float32))) == "disagree"
    assert compare(one("FP32", a), one("FP32", np.array([np.nan, 1.0], dtype=np.float32))) == "disagree"


def test_large_int64_is_compared_exactly():
    a = np.array([2**62, -(2**62)], dtype=np.int64)
    assert compare(one("INT64", a), one("INT64", a + 1), rtol=0.0, atol=0.0) == "disagree"
    assert compare(one("INT64", a), one("INT64", a + 1), rtol=0.0, atol=1.0) == "agree"
    assert compare(one("INT64", a), one("INT64", a.copy(), binary=False), rtol=0.0, atol=0.0) == "agree"
    u = np.array([2**64 - 1], dtype=np.uint64)
    assert compare(one("UINT64", u), one("UINT64", u - 1), rtol=0.0, atol=0.0) == "disagree"
    assert compare(one("UINT64", u), one("UINT64", u, binary=False)) == "agree"


def test_small_ints_use_the_tolerance():
    a = np.array([10, 20], dtype=np.int32)
    assert compare(one("INT32", a), one("INT32", a + 1)) == "disagree"
    assert compare(one("INT32", a), one("INT32", a + 1), rtol=0.0, atol=1.0) == "agree"


def test_bytes_compare_exactly_as_raw_bytes():
    a = np.array([b"\x00\xff", b"caf\xc3\xa9"], dtype=object)
    b = np.array([b"\x00\xff", b"CAF\xc3\xa9"], dtype=object)
    assert compare(one("BYTES", a), one("BYTES", a.copy())) == "agree"
    assert compare(one("BYTES", a), one("BYTES", b)) == "disagree"
    # Text in JSON is its UTF-8 bytes in binary.
    text = np.array(["café"], dtype=object)
    raw = np.array(["café".encode()], dtype=object)
    assert compare(one("BYTES", text, binary=False), one("BYTES", raw)) == "agree"


def test_empty_tensors_agree():
    e = np.zeros((0, 4), dtype=np.float32)
    assert compare(one("FP32", e), one("FP32", e, binary=False)) == "agree"
    assert compare(one("BYTES", np.zeros((0,), dtype=object)), one("BYTES", np.zeros((0,), dtype=object))) == "agree"


def test_bf16_binary_widens_exactly():
    one_bf16 = np.array([0x3F80, 0x4000], dtype="<u2").tobytes()  # 1.0, 2.0
    head = json.dumps({"outputs": [{"name": "Y", "datatype": "BF16", "shape": [2],
                                    "parameters": {"binary_data_size": 4}}]}).encode()
    text = json.dumps({"outputs": [{"name": "Y", "datatype": "BF16", "shape": [2], "data": [1.0, 2.0]}]}).encode()
    assert compare_outputs(head + one_bf16, len(head), text, None, **TOL) == "agree"
    two = np.array([0x3F80, 0x4040], dtype="<u2").tobytes()  # 1.0, 3.0
    assert compare_outputs(head + one_bf16, len(head), head + two, len(head), **TOL) == "disagree"


def test_nested_json_data_is_row_major():
    flat = json.dumps({"outputs": [{"name": "Y", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}]})
    nested = json.dumps({"outputs": [{"name": "Y", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]})
    assert compare_outputs(flat.encode(), None, nested.encode(), None, **TOL) == "agree"


# -- disagreement in structure ------------------------------------------------------------------------

def test_shape_datatype_and_names_must_match():
    x = np.arange(6, dtype=np.float32)
    assert compare(one("FP32", x.reshape(2, 3)), one("FP32", x.reshape(3, 2))) == "disagree"
    assert compare(one("FP32", x), one("FP64", x.astype(np.float64))) == "disagree"
    assert compare(one("FP32", x), one("FP32", x, name="OTHER")) == "disagree"
    both = response({"OUTPUT0": ("FP32", x), "VERSION": ("INT32", np.array([1], dtype=np.int32))})
    assert compare(one("FP32", x), both) == "disagree"
    assert compare(both, one("FP32", x)) == "disagree"


def test_no_outputs_on_both_sides_agree():
    empty = json.dumps({"model_name": "m", "outputs": []}).encode()
    assert compare_outputs(empty, None, empty, None, **TOL) == "agree"


# -- errors ----------------------------------------------------------------------------------------------

GOOD = one("FP32", np.ones(4, dtype=np.float32))


@pytest.mark.parametrize("body,header_length", [
    (b'{"error": "injected failure (version 3, failure_rate 1.0)"}', None),
    (b"", None),
    (b"not json", None),
    (b"\xff\xfe", None),
    (b"[1, 2]", None),
    (b'{"model_name": "m"}', None),
    (b'{"outputs": {"name": "Y"}}', None),
    (b'{"outputs": [1]}', None),
    (b'{"outputs": [{"name": "Y", "datatype": "FP32", "shape": [2]}]}', None),  # neither data nor binary
    (b'{"outputs": [{"name": "Y", "datatype": "FP32", "shape": [2], "data": [1]}]}', None),  # count
    (b'{"outputs": [{"name": "Y", "datatype": "FP32", "shape": [-1], "data": []}]}', None),
    (b'{"outputs": [{"name": "Y", "datatype": "FP32", "shape": [1], "data": ["a"]}]}', None),
    (b'{"outputs": [{"name": "Y", "datatype": "FP32", "shape": [1], "data": [true]}]}', None),
    (b'{"outputs": [{"name": "Y", "datatype": "BOOL", "shape": [1], "data": [1]}]}', None),
    (b'{"outputs": [{"name": "Y", "datatype": "BYTES", "shape": [1], "data": [1]}]}', None),
    (b'{"outputs": [{"name": "Y", "datatype": "INT8", "shape": [1], "data": [1000]}]}', None),
    (b'{"outputs": [{"name": "Y", "datatype": "FP8", "shape": [1], "data": [1]}]}', None),
    (b'{"outputs": [{"name": "Y", "datatype": "FP32", "shape": [1], "data": [1]},'
     b' {"name": "Y", "datatype": "FP32", "shape": [1], "data": [1]}]}', None),  # a name twice
])
def test_unparsable_or_error_response_is_error(body, header_length):
    assert compare_outputs(body, header_length, *GOOD, **TOL) == "error"
    assert compare_outputs(*GOOD, body, header_length, **TOL) == "error"


def test_binary_layout_errors():
    body, header_length = GOOD
    assert compare_outputs(body[:-1], header_length, *GOOD, **TOL) == "error"  # truncated tensor
    assert compare_outputs(body + b"\x00", header_length, *GOOD, **TOL) == "error"  # trailing bytes
    assert compare_outputs(body, len(body) + 1, *GOOD, **TOL) == "error"  # header past the end
    assert compare_outputs(body, header_length - 1, *GOOD, **TOL) == "error"  # header cut short
    assert compare_outputs(body, None, *GOOD, **TOL) == "error"  # binary read as JSON
    head = json.dumps({"outputs": [{"name": "Y", "datatype": "FP32", "shape": [2],
                                    "parameters": {"binary_data_size": 4}}]}).encode()
    assert compare_outputs(head + b"\x00" * 4, len(head), *GOOD, **TOL) == "error"  # size vs shape
    bad_bytes = head.replace(b"FP32", b"BYTES") + b"\x09\x00\x00\x00"
    assert compare_outputs(bad_bytes, len(head) + 1, *GOOD, **TOL) == "error"  # BYTES length past end


def test_both_errors_is_error():
    err = b'{"error": "boom"}'
    assert compare_outputs(err, None, err, None, **TOL) == "error"


@pytest.mark.parametrize("binary", [True, False])
def test_compressed_bodies_are_inflated(binary):
    import gzip
    import zlib

    x = sample("FP32", (3, 4))
    body, header_length = one("FP32", x, binary=binary)
    assert compare((gzip.compress(body), header_length), (body, header_length)) == "agree"
    assert compare((zlib.compress(body), header_length), (gzip.compress(body), header_length)) == "agree"
    other = one("FP32", x + 1, binary=binary)
    assert compare((gzip.compress(body), header_length), other) == "disagree"
    # tritonclient reads the same compressed bytes the same way
    result = InferResult.from_response_body(gzip.compress(body), header_length=header_length, content_encoding="gzip")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)


def test_broken_compressed_bodies_are_errors():
    import gzip

    body, header_length = GOOD
    assert compare_outputs(gzip.compress(body)[:-5], header_length, *GOOD, **TOL) == "error"
    assert compare_outputs(b"\x1f\x8bnot gzip", None, *GOOD, **TOL) == "error"
    assert compare_outputs(b"x-not-zlib", None, *GOOD, **TOL) == "error"
