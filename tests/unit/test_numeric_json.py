"""The simdjson fast path for :predict bodies agrees with the orjson path, or declines.

For every body: `numeric_json` either declines (None) or gives arrays equal in dtype, shape
and bytes to what `json_tensors` gives; and `PredictBody` (fast, then ordinary) gives the
ordinary path's outcome: the same arrays and row format, or the same error message.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servingd.apis.rest import json_tensors, numeric_json
from servingd.apis.rest.predict_body import PredictBody
from servingd.core.errors import InvalidArgument

NUMERIC = [
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
]
DTYPES = [np.dtype(t) for t in [*NUMERIC, np.bool_, np.object_]]

Outcome = tuple[str, Any]


def _ordinary(raw: bytes, dtypes: dict[str, np.dtype[Any]]) -> Outcome:
    """What the REST handler did before the fast path (orjson + json_tensors)."""
    try:
        body = json_tensors.loads(raw)
        if not isinstance(body, dict):
            raise InvalidArgument("JSON Value: request body is not an object")
        name = body.get("signature_name", "")
        if not isinstance(name, str):
            raise InvalidArgument("'signature_name' key must be a string value.")
        arrays, row_format = json_tensors.decode_predict_body(body, dtypes)
    except InvalidArgument as exc:
        return "error", exc.message
    return "ok", (name, arrays, row_format)


def _through_predict_body(raw: bytes, dtypes: dict[str, np.dtype[Any]]) -> Outcome:
    try:
        body = PredictBody(raw)
        arrays = body.decode(dtypes)
    except InvalidArgument as exc:
        return "error", exc.message
    return "ok", (body.signature_name, arrays, body.row_format)


def _assert_same_arrays(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for alias, array in want.items():
        assert got[alias].dtype == array.dtype, alias
        assert got[alias].shape == array.shape, alias
        if array.dtype.kind == "O":  # bytes objects: compare values, not pointers
            assert got[alias].tolist() == array.tolist(), alias
        else:
            assert got[alias].tobytes() == array.tobytes(), alias


def check_body(raw: bytes, dtypes: dict[str, np.dtype[Any]]) -> bool:
    """Asserts the fast path agrees with the ordinary one; returns whether it was taken."""
    want = _ordinary(raw, dtypes)
    fast = numeric_json.parse(raw)
    taken = False
    if fast is not None:
        arrays = fast.decode(dtypes)
        if arrays is not None:
            taken = True
            assert want[0] == "ok", (raw[:200], want)
            name, want_arrays, row_format = want[1]
            assert (fast.signature_name, fast.row_format) == (name, row_format)
            _assert_same_arrays(arrays, want_arrays)
    got = _through_predict_body(raw, dtypes)
    assert got[0] == want[0], (raw[:200], got, want)
    if want[0] == "error":
        assert got[1] == want[1]
    else:
        assert got[1][0] == want[1][0] and got[1][2] == want[1][2]
        _assert_same_arrays(got[1][1], want[1][1])
    return taken


# -- number spellings: the same value written the ways clients write it ----------------


def _float_text(x: float, style: int) -> str:
    if not math.isfinite(x):
        return json.dumps(x, allow_nan=True)
    if style == 1:
        return f"{x:.17g}"
    if style == 2:
        return f"{x:.4e}"
    if style == 3:
        return f"{x:E}"
    return repr(x)


numbers = st.one_of(
    st.integers(min_value=-300, max_value=300).map(str),
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
    st.sampled_from(["-0", "0", "-0.0", "2.0", "1e2", "1E-3", "65504", "70000", "1e400"]),
    st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 3)).map(
        lambda t: _float_text(*t)
    ),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(repr),
)


@st.composite
def tensors(draw: st.DrawFn) -> str:
    """JSON text of a rectangular tensor (rank 1..4), sometimes made ragged or mixed."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    uniform = draw(st.sampled_from(["int", "float", "mixed"]))
    if uniform == "int":
        leaf = st.integers(min_value=-(2**20), max_value=2**20).map(str)
    elif uniform == "float":
        leaf = st.floats(min_value=-1e30, max_value=1e30, allow_nan=False).map(repr)
    else:
        leaf = numbers

    def build(dims: list[int]) -> str:
        if not dims:
            return draw(leaf)
        items = [build(dims[1:]) for _ in range(dims[0])]
        return "[" + ",".join(items) + "]"

    text = build(shape)
    mutation = draw(st.integers(0, 9))
    if mutation == 0:  # one leaf becomes an array, or one row loses an element
        text = text.replace(",", ",[", 1).replace("]", "]]", 1) if "," in text else text
    elif mutation == 1:
        text = text.replace(",", "", 1) if "," in text else text
    elif mutation == 2:
        text = text.replace("[", "[[", 1) + "]"
    elif mutation == 3:
        weird = draw(st.sampled_from(['"a[b"', "true", "null", '{"b64":"AA=="}', "[]", "NaN"]))
        text = text.replace("[", "[" + weird + ",", 1)
    return text


@given(
    tensors(),
    st.sampled_from(DTYPES),
    st.sampled_from(["instances", "inputs", "object"]),
    st.sampled_from([None, "serving_default", "x[", 3]),
)
@settings(max_examples=600, deadline=None)
def test_generated_bodies_agree(
    tensor: str, dtype: np.dtype[Any], form: str, signature_name: Any
) -> None:
    parts = {
        "instances": f'"instances": {tensor}',
        "inputs": f'"inputs": {tensor}',
        "object": f'"inputs": {{"x": {tensor}}}',
    }
    fields = [parts[form]]
    if signature_name is not None:
        fields.append(f'"signature_name": {json.dumps(signature_name)}')
    raw = ("{" + ", ".join(fields) + "}").encode()
    check_body(raw, {"x": dtype})


@given(st.lists(st.sampled_from(NUMERIC), min_size=2, max_size=2), tensors(), tensors())
@settings(max_examples=150, deadline=None)
def test_two_input_bodies_agree(types: list[type[np.generic]], first: str, second: str) -> None:
    dtypes = {"a": np.dtype(types[0]), "b": np.dtype(types[1])}
    check_body(f'{{"inputs": {{"a": {first}, "b": {second}}}}}'.encode(), dtypes)
    check_body(f'{{"inputs": {{"a": {first}}}}}'.encode(), dtypes)
    check_body(f'{{"instances": {first}}}'.encode(), dtypes)


json_values = st.recursive(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(json_values, st.sampled_from(DTYPES), st.sampled_from(["instances", "inputs"]))
@settings(max_examples=300, deadline=None)
def test_any_json_agrees(value: Any, dtype: np.dtype[Any], key: str) -> None:
    check_body(json.dumps({key: value}, allow_nan=True).encode(), {"x": dtype})
    check_body(json.dumps(value, allow_nan=True).encode(), {"x": dtype})


ADVERSARIAL = [
    b'{"instances": [[1,[2]],[3,4]]}',
    b'{"instances": [[1,2],[3,4,5,6],[]]}',
    b'{"instances": [[1,2],[3,4,5],[6]]}',
    b'{"instances": [[1,2],[3]]}',
    b'{"instances": [[1,2],3]}',
    b'{"instances": [1,[2,3]]}',
    b'{"instances": [[1,2],[3,4]], "signature_name": "a[b"}',
    b'{"instances": [[1,2],[3,4]], "signature_name": "a]b"}',
    b'{"instances": [[1,2],[3,4]], "signature_name": "x", "signature_name": 3}',
    b'{"instances": [[1,2],[3,4]], "instances": [[5,6],[7,8]]}',
    b'{"instances": [[1,2],[3,4]], "extra": 1}',
    b'{"instances": [[1,2],[3,4]], "inputs": [[1,2],[3,4]]}',
    b'{"instances": [[1,true],[3,4]]}',
    b'{"instances": [[1,null],[3,4]]}',
    b'{"instances": [[1,"2"],[3,4]]}',
    b'{"instances": [[1,NaN],[3,4]]}',
    b'{"instances": [[1,Infinity],[3,-Infinity]]}',
    b'{"instances": [[1,1e400],[3,4]]}',
    b'{"instances": [[1,18446744073709551615],[3,4]]}',
    b'{"instances": [[-1,18446744073709551615],[3,4]]}',
    b'{"instances": [[1,18446744073709551616],[3,4]]}',
    b'{"instances": [[1,9007199254740993],[3,4]]}',
    b'{"instances": [[-0,-0.0],[0,0.0]]}',
    b'{"instances": [[1.5,2],[3,4]]}',
    b'{"instances": [[2.0,2],[3,4]]}',
    b'{"instances": [[300,-129],[3,4]]}',
    b'{"instances": []}',
    b'{"instances": [[]]}',
    b'{"instances": [[],[]]}',
    b'{"instances": [[[]]]}',
    b'{"instances": 5}',
    b'{"instances": [5]}',
    b'{"instances": [[5]]}',
    b'{"instances": [[[1],[2]],[[3],[4]]]}',
    b'{"instances": [{"x": [1,2]}, {"x": [3,4]}]}',
    b'{"instances": [{"b64": "AAAA"}]}',
    b'{"instances": [[{"b64": "AAAA"}, 1]]}',
    b'{"inputs": {"x": [[1,2],[3,4]]}}',
    b'{"inputs": {"x": [[1,2],[3,4]], "y": [1]}}',
    b'{"inputs": {"b64": [1,2]}}',
    b'{"inputs": {"b64": "AAAA"}}',
    b'{"inputs": {"x": 5}}',
    b'{"inputs": {}}',
    b'{"inputs": {"x": [1,2], "x": [3,4]}}',
    b'{"inputs": [[1,2],[3,4]]}',
    b'{"inputs": 5}',
    b'{"inputs": []}',
    b'{"inputs": [1,2,3]}',
    b'{"inputs": "[1,2]"}',
    b'{"inputs": [[1,2],[3,4]] ',
    b'{"inputs": [[1,2],[3,4]]} x',
    b'{"inputs": [[1,2],[3,4]]}\n',
    b'\xef\xbb\xbf{"inputs": [[1,2],[3,4]]}',
    b'{"inputs": [[1,2],[3,4]], "signature_name": "\\u0041"}',
    b'{"inputs": [[1,2],[3,4]], "signature_name": "\\ud800"}',
    b'{"inputs": [[1,2],[3,4]], "signature_name": "\xff"}',
    b'{"inputs": [[1,2],[3,4]], "signature_name": "caf\xc3\xa9"}',
    b'{"inputs": [[1,2],[3,4]], "signature_name": "a\tb"}',
    b'{"inputs": [[1,2],[3,4]], "signature_name": null}',
    b"[[1,2],[3,4]]",
    b"",
    b"null",
    b"{" + b"[" * 70 + b"1" + b"]" * 70 + b"}",
    b'{"inputs": ' + b"[" * 9 + b"1,2" + b"]" * 9 + b"}",
    b'{"inputs": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}",
    b'{"inputs": [' + b",".join([b"1"] * 1000) + b"]}",
]


@pytest.mark.parametrize("raw", ADVERSARIAL)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_adversarial_bodies_agree(raw: bytes, dtype: np.dtype[Any]) -> None:
    check_body(raw, {"x": dtype})


def benchmark_body() -> bytes:
    rows = np.random.default_rng(0).standard_normal((64, 784)).astype(np.float32)
    return orjson.dumps({"instances": rows.tolist()})


def test_fast_path_takes_the_benchmark_body() -> None:
    raw = benchmark_body()
    assert check_body(raw, {"x": np.dtype(np.float32)})
    assert PredictBody(raw).fast


@pytest.mark.parametrize(
    "raw",
    [
        b'{"instances": [[1.5, 2], [3, 4]], "signature_name": "serving_default"}',
        b'{"inputs": [1, 2, 3]}',
        b'{"inputs": {"x": [[[1, 2], [3, 4]]]}}',
        b'{"instances": [7]}',
    ],
)
def test_fast_path_takes_plain_numeric_bodies(raw: bytes) -> None:
    assert check_body(raw, {"x": np.dtype(np.float32)})
    assert check_body(raw.replace(b"1.5", b"1"), {"x": np.dtype(np.int32)})


def test_fast_path_declines_shapes_it_would_check_slowly() -> None:
    # [2, 3, 1]: one number per innermost array; the ordinary path is as fast.
    raw = b'{"inputs": [[[1], [2], [3]], [[4], [5], [6]]]}'
    assert not check_body(raw, {"x": np.dtype(np.float32)})
