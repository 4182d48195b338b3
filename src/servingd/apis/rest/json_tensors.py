"""TF Serving's REST JSON tensor formats (g3doc/api_rest.md) <-> numpy.

Requests: row format `{"instances": [...]}` (one entry per batch row; an object per row
when the signature has several inputs) or columnar `{"inputs": ...}` (a value, or an object
of values, each a whole tensor). Strings may be `{"b64": "..."}`. Numbers are converted to
the dtype the signature declares; NaN and Infinity are accepted as TF Serving does.
Responses: `{"predictions": [...]}` for the row format, `{"outputs": ...}` for columnar.
String outputs whose alias ends in `_bytes` are written as `{"b64": ...}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from servingd.core.errors import InvalidArgument

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def loads(body: bytes) -> Any:
    """Parses a request body; falls back to the json module for NaN/Infinity literals."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as fast_error:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidArgument(f"JSON Parse error: {fast_error}") from None


def dumps(obj: Any) -> bytes:
    """Serializes a response; NaN and Infinity are written as literals, as TF Serving does."""
    try:
        if not _has_non_finite(obj):
            return orjson.dumps(obj, option=_ORJSON_OPTIONS)
    except TypeError:
        pass
    return json.dumps(_to_builtin(obj), allow_nan=True, separators=(",", ":")).encode()


def _has_non_finite(obj: Any) -> bool:
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind in "fc" and not bool(np.isfinite(obj).all())
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_has_non_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_non_finite(v) for v in obj)
    return False


def _to_builtin(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_builtin(v) for v in obj]
    return obj


# -- request decoding ---------------------------------------------------------------------


def decode_predict_body(
    body: Any, input_dtypes: Mapping[str, np.dtype[Any]]
) -> tuple[dict[str, np.ndarray], bool]:
    """Returns (inputs by alias, row_format) from a parsed :predict body."""
    if not isinstance(body, dict):
        raise InvalidArgument("JSON Value: request body is not an object")
    has_instances = "instances" in body
    has_inputs = "inputs" in body
    if has_instances == has_inputs:
        if has_instances:
            raise InvalidArgument(
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"
            )
        raise InvalidArgument("Missing 'inputs' or 'instances' key")
    if has_instances:
        return _decode_instances(body["instances"], input_dtypes), True
    return _decode_columnar(body["inputs"], input_dtypes), False


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _decode_instances(
    instances: Any, input_dtypes: Mapping[str, np.dtype[Any]]
) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise InvalidArgument("Expecting 'instances' to be an list/array")
    if not instances:
        raise InvalidArgument("'instances' is empty: at least one instance is required")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        alias = _single_input(input_dtypes, "instances")
        return {alias: _to_array(instances, input_dtypes[alias], alias)}
    columns: dict[str, list[Any]] = {alias: [] for alias in instances[0]}
    for row, instance in enumerate(instances):
        if not isinstance(instance, dict) or _is_b64(instance):
            raise InvalidArgument(
                f"Expecting object but got list at item {row} of input list: all instances "
                "must be objects with the same named inputs"
            )
        if instance.keys() != columns.keys():
            raise InvalidArgument(
                f"Failed to process element: {row} of 'instances' list. JSON object: "
                f"{sorted(instance)} keys do not match the first instance's {sorted(columns)}"
            )
        for alias, value in instance.items():
            columns[alias].append(value)
    return {
        alias: _to_array(values, _dtype_for(input_dtypes, alias), alias)
        for alias, values in columns.items()
    }


def _decode_columnar(
    inputs: Any, input_dtypes: Mapping[str, np.dtype[Any]]
) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return {
            alias: _to_array(value, _dtype_for(input_dtypes, alias), alias)
            for alias, value in inputs.items()
        }
    alias = _single_input(input_dtypes, "inputs")
    return {alias: _to_array(inputs, input_dtypes[alias], alias)}


def _single_input(input_dtypes: Mapping[str, np.dtype[Any]], key: str) -> str:
    if len(input_dtypes) != 1:
        raise InvalidArgument(
            f"The signature has {len(input_dtypes)} inputs ({', '.join(sorted(input_dtypes))}): "
            f"'{key}' must name each of them in a JSON object"
        )
    return next(iter(input_dtypes))


def _dtype_for(input_dtypes: Mapping[str, np.dtype[Any]], alias: str) -> np.dtype[Any]:
    dtype = input_dtypes.get(alias)
    if dtype is None:
        raise InvalidArgument(
            f"input tensor alias not found in signature: {alias}. Inputs expected to be in "
            f"the set {{{','.join(sorted(input_dtypes))}}}."
        )
    return dtype


def _to_array(value: Any, dtype: np.dtype[Any], alias: str) -> np.ndarray:
    if dtype.kind in "OSU":
        return _string_array(value, alias)
    try:
        array = np.array(value)
    except ValueError as exc:
        raise InvalidArgument(
            f"Failed to process input '{alias}': the nested lists are ragged ({exc})"
        ) from None
    if array.dtype.kind not in "biuf" and not (array.dtype.kind == "O" and array.size == 0):
        raise InvalidArgument(
            f"JSON Value for input '{alias}' is not of expected type: {dtype.name} "
            f"(got {_json_kind(array)})"
        )
    if dtype.kind in "iu" and array.dtype.kind == "f":
        raise InvalidArgument(
            f"JSON Value for input '{alias}' is not of expected type: {dtype.name} "
            "(got a number with a fraction)"
        )
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        # int(): a bool array's max() compared with uint64's max overflows.
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise InvalidArgument(
                f"JSON Value for input '{alias}' is out of range for {dtype.name}"
            )
    with np.errstate(over="ignore"):  # beyond float32's range becomes +-inf, as a C cast
        return array.astype(dtype, copy=False)


def _json_kind(array: np.ndarray) -> str:
    return {"U": "string", "O": "mixed or object values"}.get(array.dtype.kind, array.dtype.name)


# numpy arrays have at most 64 dimensions; deeper JSON lists cannot be a tensor.
MAX_TENSOR_RANK = 64


def _check_rank(value: Any, alias: str) -> None:
    """Refuses lists nested deeper than MAX_TENSOR_RANK (without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list):
            if depth >= MAX_TENSOR_RANK:
                raise InvalidArgument(
                    f"Failed to process input '{alias}': lists nested deeper than "
                    f"{MAX_TENSOR_RANK} levels (the most dimensions a tensor may have here)"
                )
            stack.extend((x, depth + 1) for x in item)


def _string_array(value: Any, alias: str) -> np.ndarray:
    _check_rank(value, alias)

    def leaf(item: Any) -> Any:
        if isinstance(item, list):
            return [leaf(x) for x in item]
        if isinstance(item, str):
            return item.encode("utf-8")
        if _is_b64(item):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise InvalidArgument(
                    f"Unable to base64 decode the 'b64' value of input '{alias}'"
                ) from None
        raise InvalidArgument(
            f"JSON Value for input '{alias}' is not of expected type: string (got {item!r:.40})"
        )

    nested = leaf(value)
    shape = _nested_shape(nested, alias)
    array = np.empty(shape, dtype=object)
    if shape:
        flat = _flatten(nested)
        array.reshape(-1)[:] = flat
    else:
        array[()] = nested
    return array


def _nested_shape(nested: Any, alias: str) -> tuple[int, ...]:
    shape: list[int] = []
    level = nested
    while isinstance(level, list):
        shape.append(len(level))
        level = level[0] if level else None
    expected = 1
    for dim in shape:
        expected *= dim
    if len(_flatten(nested)) != expected:
        raise InvalidArgument(f"Failed to process input '{alias}': the nested lists are ragged")
    return tuple(shape)


def _flatten(nested: Any) -> list[Any]:
    if not isinstance(nested, list):
        return [nested]
    out: list[Any] = []
    for item in nested:
        out.extend(_flatten(item))
    return out


# -- response encoding --------------------------------------------------------------------


def encode_output(alias: str, array: np.ndarray) -> Any:
    """An output tensor as JSON-ready data (numpy arrays are serialized by orjson)."""
    if array.dtype.kind in "OSU":
        as_b64 = alias.endswith("_bytes")
        return _string_tree(array.tolist(), as_b64)
    if array.dtype.kind == "c":
        raise InvalidArgument(f"Output '{alias}' has complex dtype, which JSON cannot carry")
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


def _string_tree(item: Any, as_b64: bool) -> Any:
    if isinstance(item, list):
        return [_string_tree(x, as_b64) for x in item]
    raw = item if isinstance(item, bytes) else str(item).encode()
    if as_b64:
        return {"b64": base64.b64encode(raw).decode("ascii")}
    return raw.decode("utf-8", errors="replace")


def encode_predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    encoded = {alias: encode_output(alias, array) for alias, array in outputs.items()}
    if not row_format:
        if len(encoded) == 1:
            return {"outputs": next(iter(encoded.values()))}
        return {"outputs": encoded}
    if len(encoded) == 1:
        return {"predictions": next(iter(encoded.values()))}
    batch_sizes = {alias: _batch_size(array) for alias, array in outputs.items()}
    sizes = set(batch_sizes.values())
    if len(sizes) != 1 or None in sizes:
        raise InvalidArgument(
            "Tensors in the output do not all have the same 0th dimension, so they cannot be "
            f"returned in the row ('instances') format ({batch_sizes}); use the columnar "
            "('inputs') format"
        )
    n = sizes.pop() or 0
    return {
        "predictions": [{alias: value[i] for alias, value in encoded.items()} for i in range(n)]
    }


def _batch_size(array: np.ndarray) -> int | None:
    return int(array.shape[0]) if array.ndim else None
