"""TensorProto <-> numpy codecs, checked against TensorFlow's own make_ndarray."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2, types_pb2

from servingd.apis.admission import check_tensor_protos
from servingd.core.errors import InvalidArgument
from servingd.servables.codecs import (
    dtype_from_proto_enum,
    ndarray_to_tensor_proto,
    proto_enum_from_dtype,
    tensor_proto_to_ndarray,
)
from support.figures import Tally, soak_count

NUMERIC = [
    np.float32,
    np.float64,
    np.float16,
    ml_dtypes.bfloat16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
]


def _sample(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(7)
    values = rng.integers(-50, 50, size=shape)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return values > 0
    if dt.kind == "u":
        return np.abs(values).astype(dt)
    if dt.kind == "c":
        return (values + 1j * values[::-1]).astype(dt) if shape else np.array(3 - 2j, dt)
    return (
        (values / 4).astype(dt) if dt.kind == "f" or dt == ml_dtypes.bfloat16 else values.astype(dt)
    )


def _proto(dtype: int, shape: list[int], **fields: object) -> tensor_pb2.TensorProto:
    p = tensor_pb2.TensorProto(dtype=dtype, **fields)  # type: ignore[arg-type]
    p.tensor_shape.dim.extend(p.tensor_shape.Dim(size=d) for d in shape)
    return p


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3), (2, 0, 4)])
@pytest.mark.parametrize("content", [True, False], ids=["tensor_content", "typed_val"])
def test_round_trip_every_dtype(dtype: type, shape: tuple[int, ...], content: bool) -> None:
    arr = _sample(dtype, shape)
    proto = ndarray_to_tensor_proto(arr, use_tensor_content=content)
    assert proto.dtype == proto_enum_from_dtype(arr.dtype)
    assert [d.size for d in proto.tensor_shape.dim] == list(shape)
    assert bool(proto.tensor_content) == (content and arr.size > 0)
    back = tensor_proto_to_ndarray(proto)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    # TensorFlow reads our encoding the same way.
    if np.dtype(dtype) != ml_dtypes.bfloat16:
        np.testing.assert_array_equal(tf.make_ndarray(proto), arr)


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_reads_what_tensorflow_writes(dtype: type) -> None:
    arr = _sample(dtype, (2, 3))
    for proto in (tf.make_tensor_proto(arr), tf.make_tensor_proto(arr.ravel()[:1], shape=[2, 3])):
        want = tf.make_ndarray(proto)
        got = tensor_proto_to_ndarray(proto)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_strings() -> None:
    arr = np.array([[b"a", b"\x00\xff"], [b"", "caf\u00e9".encode()]], dtype=object)
    proto = ndarray_to_tensor_proto(arr)
    assert proto.dtype == types_pb2.DT_STRING and list(proto.string_val)[1] == b"\x00\xff"
    back = tensor_proto_to_ndarray(proto)
    assert back.dtype == object and back.shape == (2, 2)
    assert back.tolist() == arr.tolist()
    # str and fixed-width bytes arrays encode as UTF-8 bytes.
    assert tensor_proto_to_ndarray(ndarray_to_tensor_proto(np.array(["caf\u00e9"]))).tolist() == [
        "caf\u00e9".encode()
    ]
    assert tensor_proto_to_ndarray(ndarray_to_tensor_proto(np.array([b"xy"]))).tolist() == [b"xy"]
    scalar = tensor_proto_to_ndarray(_proto(types_pb2.DT_STRING, [], string_val=[b"s"]))
    assert scalar.shape == () and scalar.item() == b"s"


def test_tensor_content_is_a_view_not_a_copy() -> None:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = tensor_proto_to_ndarray(ndarray_to_tensor_proto(arr))
    assert not back.flags.owndata and not back.flags.writeable


def test_single_value_is_broadcast_and_short_lists_pad_with_last() -> None:
    p = _proto(types_pb2.DT_FLOAT, [2, 3], float_val=[1.5])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(p), np.full((2, 3), 1.5, np.float32))
    p = _proto(types_pb2.DT_INT32, [4], int_val=[1, 2])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(p), [1, 2, 2, 2])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(p), tf.make_ndarray(p))
    p = _proto(types_pb2.DT_STRING, [3], string_val=[b"x"])
    assert tensor_proto_to_ndarray(p).tolist() == [b"x"] * 3
    p = _proto(types_pb2.DT_COMPLEX64, [2], scomplex_val=[1.0, 2.0])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(p), [1 + 2j, 1 + 2j])
    # No values at all: zeros, as TensorFlow.
    p = _proto(types_pb2.DT_DOUBLE, [2])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(p), [0.0, 0.0])


def test_half_val_holds_bit_patterns() -> None:
    bits = np.array([1.0, -2.5], np.float16).view(np.uint16).tolist()
    p = _proto(types_pb2.DT_HALF, [2], half_val=bits)
    np.testing.assert_array_equal(tensor_proto_to_ndarray(p), np.array([1.0, -2.5], np.float16))


@pytest.mark.parametrize(
    ("proto", "match"),
    [
        (_proto(types_pb2.DT_FLOAT, [3], float_val=[1, 2, 3, 4]), "float_val has 4 values"),
        (_proto(types_pb2.DT_FLOAT, [3], tensor_content=b"\0" * 8), "has 8 bytes .* needs 12"),
        (_proto(types_pb2.DT_FLOAT, [-1], float_val=[1]), "negative dimension -1"),
        (_proto(types_pb2.DT_RESOURCE, [1]), "unsupported dtype DT_RESOURCE"),
        (_proto(types_pb2.DT_INVALID, [1]), "unsupported dtype DT_INVALID"),
        (_proto(types_pb2.DT_COMPLEX64, [1], scomplex_val=[1.0]), "pairs"),
    ],
    ids=["too-many-values", "content-size", "negative-dim", "resource", "invalid", "odd-complex"],
)
def test_invalid_protos(proto: tensor_pb2.TensorProto, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        tensor_proto_to_ndarray(proto)


def test_unknown_rank_is_rejected() -> None:
    p = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    p.tensor_shape.unknown_rank = True
    with pytest.raises(InvalidArgument, match="unknown rank"):
        tensor_proto_to_ndarray(p)


def test_dtype_helpers() -> None:
    assert dtype_from_proto_enum(types_pb2.DT_FLOAT) == np.float32
    assert dtype_from_proto_enum(types_pb2.DT_STRING) == np.dtype(object)
    assert proto_enum_from_dtype(np.int64) == types_pb2.DT_INT64
    assert proto_enum_from_dtype(ml_dtypes.bfloat16) == types_pb2.DT_BFLOAT16
    assert proto_enum_from_dtype(np.dtype("S3")) == types_pb2.DT_STRING
    assert proto_enum_from_dtype(np.dtype(">f4")) == types_pb2.DT_FLOAT
    with pytest.raises(InvalidArgument, match="unsupported numpy dtype"):
        proto_enum_from_dtype(np.dtype("datetime64[s]"))
    with pytest.raises(InvalidArgument, match="DT_VARIANT"):
        dtype_from_proto_enum(types_pb2.DT_VARIANT)


def test_encoding_into_a_given_proto_replaces_its_contents() -> None:
    target = _proto(types_pb2.DT_STRING, [1], string_val=[b"old"])
    out = ndarray_to_tensor_proto(np.array([1.0], np.float64), target)
    assert out is target and not target.string_val
    np.testing.assert_array_equal(tensor_proto_to_ndarray(target), [1.0])


def test_big_endian_input_is_stored_in_host_order() -> None:
    arr = np.array([1.0, 2.0], dtype=">f4")
    np.testing.assert_array_equal(tensor_proto_to_ndarray(ndarray_to_tensor_proto(arr)), arr)


_DTYPES = st.sampled_from([np.dtype(d) for d in NUMERIC if np.dtype(d) != ml_dtypes.bfloat16])


@settings(max_examples=60, deadline=None)
@given(
    arr=_DTYPES.flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    ),
    content=st.booleans(),
)
def test_round_trip_property(arr: np.ndarray, content: bool) -> None:
    back = tensor_proto_to_ndarray(ndarray_to_tensor_proto(arr, use_tensor_content=content))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)  # NaNs compare equal here


_HOSTILE_PROTOS = st.builds(
    lambda dtype, dims, unknown_rank, content, floats, ints, int64s, strings, halves, bools: (
        _hostile(dtype, dims, unknown_rank, content, floats, ints, int64s, strings, halves, bools)
    ),
    st.integers(min_value=0, max_value=30) | st.integers(min_value=100, max_value=130),
    st.lists(
        st.integers(min_value=-2, max_value=6) | st.sampled_from([2**31, 2**40, 2**62]),
        max_size=5,
    ),
    st.booleans(),
    st.binary(max_size=64),
    st.lists(st.floats(allow_nan=True), max_size=8),
    st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), max_size=8),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=8),
    st.lists(st.binary(max_size=8), max_size=4),
    st.lists(st.integers(min_value=0, max_value=2**16 - 1), max_size=8),
    st.lists(st.booleans(), max_size=8),
)


def _hostile(
    dtype: int,
    dims: list[int],
    unknown_rank: bool,
    content: bytes,
    floats: list[float],
    ints: list[int],
    int64s: list[int],
    strings: list[bytes],
    halves: list[int],
    bools: list[bool],
) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype)  # type: ignore[arg-type]
    proto.tensor_shape.unknown_rank = unknown_rank
    proto.tensor_shape.dim.extend(proto.tensor_shape.Dim(size=d) for d in dims)
    if content:
        proto.tensor_content = content
    proto.float_val.extend(floats)
    proto.int_val.extend(ints)
    proto.int64_val.extend(int64s)
    proto.string_val.extend(strings)
    proto.half_val.extend(halves)
    proto.bool_val.extend(bools)
    return proto


def test_hostile_tensor_protos_decode_or_are_refused() -> None:
    """Any TensorProto a gRPC client can send, through the server's own order of checks
    (the element limit, then the decoder): an array of the declared shape, or InvalidArgument."""
    tally = Tally()

    @settings(max_examples=soak_count(300, 3000), deadline=None)
    @given(_HOSTILE_PROTOS)
    def check(proto: tensor_pb2.TensorProto) -> None:
        tally()
        try:
            check_tensor_protos({"x": proto}, 1 << 20)
            array = tensor_proto_to_ndarray(proto)
        except InvalidArgument as exc:
            assert exc.message
            return
        assert array.shape == tuple(d.size for d in proto.tensor_shape.dim)

    tally.record("grpc_hostile_tensor_protos", check)


def test_empty_tensor_with_an_impossible_shape_is_refused() -> None:
    """Found by the hostile-TensorProto property: [0, 2^31, 2^31] has no elements, yet numpy
    cannot make an array of that shape; it was a ValueError (a 500), now INVALID_ARGUMENT."""
    proto = _proto(types_pb2.DT_FLOAT, [0, 2**31, 2**31])
    with pytest.raises(InvalidArgument, match=r"shape \[0, 2147483648, 2147483648\] is too large"):
        tensor_proto_to_ndarray(proto)
    assert tensor_proto_to_ndarray(_proto(types_pb2.DT_FLOAT, [0, 2**20, 2**20])).shape == (
        0,
        2**20,
        2**20,
    )


@pytest.mark.parametrize("rank", [65, 300])
@pytest.mark.parametrize("content", [False, True])
def test_more_dimensions_than_numpy_takes_are_invalid_argument(rank: int, content: bool) -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for _ in range(rank):
        proto.tensor_shape.dim.add(size=1)
    if content:
        proto.tensor_content = np.float32(1).tobytes()
    else:
        proto.float_val.append(1.0)
    with pytest.raises(InvalidArgument, match=f"{rank} dimensions, more than the 64"):
        tensor_proto_to_ndarray(proto)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_typed_float_fields_are_written_packed_and_read_back_bit_for_bit(dtype: type) -> None:
    array = np.array([[1.5, -0.0, np.nan, np.inf, -1e-30]], dtype=dtype).repeat(3, axis=0)
    proto = ndarray_to_tensor_proto(array, use_tensor_content=False)
    assert not proto.tensor_content
    field = proto.float_val if dtype is np.float32 else proto.double_val
    assert len(field) == array.size
    back = tensor_proto_to_ndarray(proto)
    assert back.dtype == array.dtype and back.tobytes() == array.tobytes()
    assert tf.make_ndarray(proto).tobytes() == array.tobytes()
