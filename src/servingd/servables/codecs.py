"""TensorProto <-> numpy, with as few copies as the formats allow.

Decoding follows TensorFlow's own ``Tensor::FromProto`` rules, so that a request that
TensorFlow Serving accepts decodes to the same array here:

- ``tensor_content`` (raw little-endian bytes, host order) is used when present; its length
  must be exactly ``num_elements * itemsize``. The array is a read-only view over the bytes
  object that protobuf hands out (``np.frombuffer``): no copy beyond that one.
- Otherwise the typed field for the dtype (``float_val``, ``int_val``, ``half_val``, ...) is
  read. Fewer values than elements are padded with the last value (so a single value is
  broadcast to the whole shape), no values at all means zeros, more values than elements
  is an error.
- ``DT_HALF`` and ``DT_BFLOAT16`` travel in ``half_val`` as their 16-bit patterns.
- ``DT_STRING`` becomes an object array of ``bytes``.

Encoding writes ``tensor_content`` for numeric dtypes (one copy: the array's bytes into
the proto) and ``string_val`` for strings. ``use_tensor_content=False`` writes the typed
fields instead, as TensorFlow Serving's Predict does for its responses (``AsProtoField``).

Everything that goes wrong raises ``InvalidArgument`` with a message that says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import ml_dtypes
import numpy as np
import numpy.typing as npt

from servingd.core.errors import InvalidArgument
from servingd.wire.tensorflow.core.framework import tensor_shape_pb2, types_pb2
from servingd.wire.tensorflow.core.framework.tensor_pb2 import TensorProto

_BFLOAT16 = np.dtype(ml_dtypes.bfloat16)

# DataType enum -> (numpy dtype, typed value field). One table, both directions.
_ENUM_TO_NUMPY: dict[int, tuple[np.dtype[Any], str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
    types_pb2.DT_BFLOAT16: (_BFLOAT16, "half_val"),
    types_pb2.DT_COMPLEX64: (np.dtype(np.complex64), "scomplex_val"),
    types_pb2.DT_COMPLEX128: (np.dtype(np.complex128), "dcomplex_val"),
    types_pb2.DT_STRING: (np.dtype(object), "string_val"),
}

_NUMPY_TO_ENUM: dict[np.dtype[Any], int] = {
    dt: enum for enum, (dt, _) in _ENUM_TO_NUMPY.items() if enum != types_pb2.DT_STRING
}

# Fields whose elements are stored as 16-bit patterns inside an int32 repeated field.
_HALF_ENUMS = frozenset({types_pb2.DT_HALF, types_pb2.DT_BFLOAT16})
_COMPLEX_ENUMS = frozenset({types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128})


def dtype_name(enum: int) -> str:
    """The DataType enum's name (``DT_FLOAT``), or the number when it has none."""
    try:
        return str(types_pb2.DataType.Name(enum))
    except ValueError:
        return str(enum)


def dtype_from_proto_enum(enum: int) -> np.dtype[Any]:
    """numpy dtype for a ``tensorflow.DataType`` value; ``object`` for DT_STRING."""
    try:
        return _ENUM_TO_NUMPY[enum][0]
    except KeyError:
        raise InvalidArgument(f"unsupported tensor dtype: {dtype_name(enum)}") from None


def proto_enum_from_dtype(dtype: npt.DTypeLike) -> int:
    """``tensorflow.DataType`` value for a numpy dtype; bytes, str and object -> DT_STRING."""
    dt = np.dtype(dtype)
    if dt.kind in "OSU":
        return int(types_pb2.DT_STRING)
    try:
        return _NUMPY_TO_ENUM[dt.newbyteorder("=") if dt.byteorder == ">" else dt]
    except KeyError:
        raise InvalidArgument(f"unsupported numpy dtype for a tensor: {dt}") from None


# numpy refuses an array whose dims (zeros aside) times the item size pass this, even an
# empty one such as [0, 2**31, 2**31]; such a shape is refused as the client's error.
_MAX_ARRAY_BYTES = 2**63 - 1
# numpy's limit on dimensions (TensorFlow allows 254; no served model takes more than 64).
MAX_DIMS = 64


def _shape_of(proto: TensorProto, itemsize: int) -> tuple[int, ...]:
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise InvalidArgument("tensor parsing error: a tensor value cannot have unknown rank")
    if len(shape.dim) > MAX_DIMS:
        raise InvalidArgument(
            f"tensor parsing error: the shape has {len(shape.dim)} dimensions, more than "
            f"the {MAX_DIMS} this server supports"
        )
    dims = tuple(int(d.size) for d in shape.dim)
    for d in dims:
        if d < 0:
            raise InvalidArgument(
                f"tensor parsing error: negative dimension {d} in shape {list(dims)}"
            )
    if math.prod(max(d, 1) for d in dims) * itemsize > _MAX_ARRAY_BYTES:
        raise InvalidArgument(f"tensor parsing error: shape {list(dims)} is too large")
    return dims


def _fill(values: np.ndarray, n: int, dtype: np.dtype[Any], field: str) -> np.ndarray:
    """TensorFlow's FromProtoField rule: pad with the last value, zeros when empty."""
    got = values.shape[0]
    if got == n:
        return values
    if got > n:
        raise InvalidArgument(
            f"tensor parsing error: {field} has {got} values but the shape holds only {n}"
        )
    if got == 0:
        if dtype.kind == "O":
            return np.full(n, b"", dtype=object)
        return np.zeros(n, dtype=dtype)
    out = np.empty(n, dtype=dtype)
    out[:got] = values
    out[got:] = values[-1]
    return out


def tensor_proto_to_ndarray(proto: TensorProto) -> np.ndarray:
    """Decode a TensorProto. Numeric ``tensor_content`` gives a read-only zero-copy view."""
    enum = int(proto.dtype)
    entry = _ENUM_TO_NUMPY.get(enum)
    if entry is None:
        raise InvalidArgument(f"tensor parsing error: unsupported dtype {dtype_name(enum)}")
    dtype, field = entry
    shape = _shape_of(proto, dtype.itemsize)
    n = math.prod(shape)

    content = proto.tensor_content
    if content and enum != types_pb2.DT_STRING:
        expected = n * dtype.itemsize
        if len(content) != expected:
            raise InvalidArgument(
                f"tensor parsing error: tensor_content has {len(content)} bytes but a "
                f"{dtype_name(enum)} tensor of shape {list(shape)} needs {expected}"
            )
        return np.frombuffer(content, dtype=dtype).reshape(shape)

    raw = getattr(proto, field)
    if enum == types_pb2.DT_STRING:
        values = np.empty(len(raw), dtype=object)
        values[:] = list(raw)
    elif enum in _HALF_ENUMS:
        values = np.array(raw, dtype=np.uint16).view(dtype)
    elif enum in _COMPLEX_ENUMS:
        parts = np.array(raw, dtype=np.float32 if enum == types_pb2.DT_COMPLEX64 else np.float64)
        if parts.shape[0] % 2:
            raise InvalidArgument(
                f"tensor parsing error: {field} needs (real, imaginary) pairs, "
                f"got {parts.shape[0]} numbers"
            )
        values = parts.view(dtype)
    else:
        values = np.array(raw, dtype=dtype)
    return _fill(values, n, dtype, field).reshape(shape)


# Fixed-width typed fields (TensorProto's field numbers): written packed, from raw bytes.
_PACKED_FIXED_FIELDS = {types_pb2.DT_FLOAT: 5, types_pb2.DT_DOUBLE: 6}


def _packed_key(field_number: int, length: int) -> bytes:
    """A length-delimited field's tag and length, as protobuf varints."""
    out = bytearray()
    for value in ((field_number << 3) | 2, length):
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def _set_shape(proto: TensorProto, shape: Iterable[int]) -> None:
    tensor_shape = proto.tensor_shape
    tensor_shape.Clear()
    tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.bytes_ | bytearray | memoryview):
        return bytes(value)
    raise InvalidArgument(
        f"a DT_STRING tensor holds bytes or str, got an element of type {type(value).__name__}"
    )


def ndarray_to_tensor_proto(
    arr: npt.ArrayLike,
    proto: TensorProto | None = None,
    *,
    use_tensor_content: bool = True,
) -> TensorProto:
    """Encode an array into ``proto`` (a new TensorProto when None) and return it."""
    a = np.asarray(arr)
    out = TensorProto() if proto is None else proto
    out.Clear()
    enum = proto_enum_from_dtype(a.dtype)
    out.dtype = enum
    _set_shape(out, a.shape)

    if enum == types_pb2.DT_STRING:
        out.string_val.extend(_as_bytes(v) for v in a.ravel())
        return out
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("="))
    if use_tensor_content:
        if a.size:
            out.tensor_content = np.ascontiguousarray(a).tobytes()
        return out

    flat = a.ravel()
    packed_field = _PACKED_FIXED_FIELDS.get(enum)
    if packed_field is not None:
        # The typed field as protobuf's packed wire form, parsed in C: a Python float per
        # element (tolist) costs ~0.4 us each, seconds for a few million.
        data = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("<")).tobytes()
        out.MergeFromString(_packed_key(packed_field, len(data)) + data)
    elif enum in _HALF_ENUMS:
        out.half_val.extend(flat.view(np.uint16).tolist())
    elif enum in _COMPLEX_ENUMS:
        getattr(out, _ENUM_TO_NUMPY[enum][1]).extend(
            flat.view(np.float32 if enum == types_pb2.DT_COMPLEX64 else np.float64).tolist()
        )
    else:
        getattr(out, _ENUM_TO_NUMPY[enum][1]).extend(flat.tolist())
    return out
