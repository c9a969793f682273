"""Do two Triton inference responses agree? Used for shadow traffic: the live variant's answer and
the shadow's are compared, never returned to the client.

A response is Triton's HTTP/REST v2 JSON (`{"outputs": [{name, datatype, shape, data}]}`) or the
binary-tensor extension: the first `Inference-Header-Content-Length` bytes are that JSON, and the
rest is each output's raw little-endian tensor, one after another in the header's output order,
for the outputs whose `parameters.binary_data_size` says how long theirs is (tritonclient's
`InferResult` reads it the same way). The two sides may use different encodings: they are decoded
to numpy first and compared by output name.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Any

import numpy as np

AGREE, DISAGREE, ERROR = "agree", "disagree", "error"
MAX_DECOMPRESSED = 256 * 1024 * 1024

# Triton datatype -> numpy dtype of its raw (little-endian) bytes.
_DTYPES = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}


class _Unparsable(Exception):
    pass


def compare_outputs(
    a_body: bytes,
    a_header_length: int | None,
    b_body: bytes,
    b_header_length: int | None,
    *,
    rtol: float,
    atol: float,
) -> str:
    """"agree", "disagree", or "error" when either body is not a successful inference response.

    Outputs agree when both sides have the same names, and for each name the same datatype, the
    same shape and values within numpy.allclose(rtol, atol). NaN equals NaN at the same place
    (the same model would give the same NaN); BOOL and BYTES compare exactly, BYTES as raw bytes.
    A body Triton compressed (the client sent Accept-Encoding: gzip or deflate, and the mirrored
    request did too) is recognised by its magic bytes and inflated first; JSON never starts so.
    """
    try:
        a = _outputs(a_body, a_header_length)
        b = _outputs(b_body, b_header_length)
    except _Unparsable:
        return ERROR
    if a.keys() != b.keys():
        return DISAGREE
    for name, (a_type, a_shape, a_values) in a.items():
        b_type, b_shape, b_values = b[name]
        if a_type != b_type or a_shape != b_shape:
            return DISAGREE
        if not _values_agree(a_type, a_values, b_values, rtol, atol):
            return DISAGREE
    return AGREE


def _values_agree(datatype: str, a: Any, b: Any, rtol: float, atol: float) -> bool:
    if datatype == "BYTES":
        return a == b
    if datatype == "BOOL":
        return bool(np.array_equal(a, b))
    if a.size == 0:
        return True
    if a.dtype.kind in "iu":
        if np.array_equal(a, b):
            return True
        if not (_fits_float64(a) and _fits_float64(b)):
            # Large INT64/UINT64 would round in float64 (two ids 1 apart would "agree"): use exact
            # integers, with numpy.isclose's formula |a - b| <= atol + rtol * |b|.
            return all(abs(x - y) <= atol + rtol * abs(y) for x, y in zip(a.astype(object), b.astype(object)))
    # float64 for every kind, so FP16's coarse arithmetic does not round the tolerance itself.
    return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True))


def _fits_float64(a: np.ndarray) -> bool:
    return int(a.min()) > -(2**52) and int(a.max()) < 2**52


def _outputs(body: bytes, header_length: int | None) -> dict[str, tuple[str, tuple[int, ...], Any]]:
    """Decode every output to (datatype, shape, values): a flat numpy array, or for BYTES a list
    of bytes. Raises _Unparsable for an error response or anything malformed."""
    body = _inflate(bytes(body))
    if header_length is None:
        header, rest = body, b""
    else:
        if not 0 <= header_length <= len(body):
            raise _Unparsable("header length out of range")
        header, rest = body[:header_length], body[header_length:]
    try:
        doc = json.loads(header)
    except (ValueError, UnicodeDecodeError) as e:
        raise _Unparsable(str(e)) from e
    if not isinstance(doc, dict) or "error" in doc or not isinstance(doc.get("outputs"), list):
        raise _Unparsable("not an inference response")

    result: dict[str, tuple[str, tuple[int, ...], Any]] = {}
    offset = 0
    for output in doc["outputs"]:
        if not isinstance(output, dict):
            raise _Unparsable("output is not an object")
        name, datatype, shape = output.get("name"), output.get("datatype"), output.get("shape")
        if not isinstance(name, str) or name in result or datatype not in _DTYPES and datatype not in ("BYTES", "BF16"):
            raise _Unparsable(f"bad output name or datatype: {name!r} {datatype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise _Unparsable(f"bad shape for {name}")
        count = math.prod(shape)
        parameters = output.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _Unparsable("parameters is not an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(rest):
                raise _Unparsable(f"bad binary_data_size for {name}")
            values = _from_binary(datatype, rest[offset:offset + size], count)
            offset += size
        else:
            values = _from_json(datatype, output.get("data"), count)
        result[name] = (datatype, tuple(shape), values)
    if offset != len(rest):
        raise _Unparsable("binary data does not match the header's sizes")
    return result


def _inflate(body: bytes) -> bytes:
    # gzip starts 1f 8b; zlib (HTTP's "deflate") starts 78. The header length counts the
    # uncompressed bytes, as tritonclient reads it (it decompresses the whole body first).
    if body[:2] == b"\x1f\x8b":
        wbits = 16 + zlib.MAX_WBITS
    elif body[:1] == b"\x78":
        wbits = zlib.MAX_WBITS
    else:
        return body
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, MAX_DECOMPRESSED)
    except zlib.error as e:
        raise _Unparsable(f"bad compressed body: {e}") from e
    if inflater.unconsumed_tail or not inflater.eof:
        raise _Unparsable("compressed body too large or truncated")
    return out


def _from_binary(datatype: str, raw: bytes, count: int) -> Any:
    if datatype == "BYTES":
        # Each element: a 4-byte little-endian length, then that many bytes (tritonclient's
        # serialize_byte_tensor / deserialize_bytes_tensor).
        items, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise _Unparsable("truncated BYTES element")
            (n,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + n > len(raw):
                raise _Unparsable("truncated BYTES element")
            items.append(raw[pos:pos + n])
            pos += n
        if len(items) != count:
            raise _Unparsable("BYTES element count does not match the shape")
        return items
    if datatype == "BF16":
        # numpy has no bfloat16: it is the top half of an FP32, so widen it exactly.
        if len(raw) != 2 * count:
            raise _Unparsable("BF16 size does not match the shape")
        return (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4")
    dtype = _DTYPES[datatype]
    if len(raw) != dtype.itemsize * count:
        raise _Unparsable("binary size does not match the shape")
    return np.frombuffer(raw, dtype=dtype)


def _from_json(datatype: str, data: Any, count: int) -> Any:
    if not isinstance(data, list):
        raise _Unparsable("output has neither data nor binary_data_size")
    flat = _flatten(data)
    if len(flat) != count:
        raise _Unparsable("data length does not match the shape")
    if datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise _Unparsable("BYTES data must be strings")
        return [x.encode("utf-8", "surrogatepass") for x in flat]
    if datatype == "BOOL":
        if not all(isinstance(x, bool) for x in flat):
            raise _Unparsable("BOOL data must be true or false")
        return np.array(flat, dtype=bool)
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in flat):
        raise _Unparsable("numeric data must be numbers")
    dtype = np.dtype("<f4") if datatype == "BF16" else _DTYPES[datatype]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not all(isinstance(x, int) and info.min <= x <= info.max for x in flat):
            raise _Unparsable(f"{datatype} data must be integers in range")
    return np.array(flat, dtype=dtype)


def _flatten(data: list) -> list:
    # Triton writes flat data, but the protocol allows row-major nesting.
    flat: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat
