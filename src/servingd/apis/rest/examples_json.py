"""REST `:classify` and `:regress`: TF Serving's JSON (util/json_tensor.cc) <-> request protos.

Request body (g3doc/api_rest.md):

    {"signature_name": "...",          optional; default serving_default
     "context": {feature: value, ...}, optional; merged into every example
     "examples": [{feature: value, ...}, ...]}

A feature value is a JSON value or a list of them, all of one kind: numbers with a fraction
become a float_list, whole numbers and booleans an int64_list, strings and
``{"b64": "..."}`` a bytes_list. Responses: classify ``{"results": [[[label, score], ...],
...]}`` (one list of classes per example), regress ``{"results": [value, ...]}``. Floats are
written as TF Serving writes them: the shortest decimal that reads back as the same float32.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from servingd.apis.inference import ModelRequest
from servingd.apis.tf_example import ExampleApi
from servingd.core.errors import InvalidArgument
from servingd.wire.tensorflow.core.example import example_pb2, feature_pb2
from servingd.wire.tensorflow_serving.apis import classification_pb2, regression_pb2

CONTEXT_KEY = "context"
EXAMPLES_KEY = "examples"
RESULTS_KEY = "results"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1

RestMethod = Callable[[ModelRequest, Any], Awaitable[Any]]


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _json_text(value: Any) -> str:
    """A JSON value for an error message (TF Serving prints the offending value)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=True, default=str)
    return text if len(text) <= 2000 else text[:2000] + "..."


def _format_error(body: Any, *parts: str) -> InvalidArgument:
    return InvalidArgument(f"JSON Value: {_json_text(body)} " + "".join(parts))


_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}


def _add_value(feature: Any, name: str, value: Any) -> None:
    """TF Serving's AddValueToFeature: one JSON value appended to a Feature."""

    def want(kind: str) -> None:
        current = feature.WhichOneof("kind")
        if current not in (None, kind):
            raise InvalidArgument(
                f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[current]}"
            )

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise InvalidArgument(
            f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
        )
    if isinstance(value, bool):
        want("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        want("bytes_list")
        try:
            feature.bytes_list.value.append(base64.b64decode(value["b64"], validate=True))
        except (binascii.Error, ValueError):
            raise InvalidArgument("Unable to base64 decode") from None
    elif isinstance(value, str):
        want("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, int) and _INT64_MIN <= value <= _UINT64_MAX:
        want("int64_list")
        if value > _INT64_MAX:
            raise InvalidArgument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(value)
    else:  # a number with a fraction (or an integer beyond 64 bits, which JSON reads as one)
        number = float(value)
        want("float_list")
        if math.isfinite(number) and abs(number) > _FLOAT32_MAX:
            raise InvalidArgument(
                f"Cannot convert JSON value: {_json_text(value)} to float without loss of "
                "precision."
            )
        feature.float_list.value.append(number)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def example_from_json(value: Any, example: Any) -> None:
    """TF Serving's MakeExampleFromJsonObject: fills ``example`` from a JSON object."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_value(feature, name, item)
        example.features.feature[name].CopyFrom(feature)


def fill_request_from_json(body: Any, spec: ModelRequest, request: Any) -> None:
    """TF Serving's FillClassifyRegressRequestFromJson (plus the path's model spec)."""
    if not isinstance(body, dict):
        raise _format_error(body, "Is not object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _format_error(
            body, "not formatted correctly. 'signature_name' key must be a string value."
        )
    request.model_spec.name = spec.name
    if spec.version is not None:
        request.model_spec.version.value = spec.version
    elif spec.label is not None:
        request.model_spec.version_label = spec.label
    request.model_spec.signature_name = signature_name
    has_context = CONTEXT_KEY in body
    if has_context:
        example_from_json(body[CONTEXT_KEY], request.input.example_list_with_context.context)
    if EXAMPLES_KEY not in body:
        raise _format_error(
            body, f"When method is classify, key '{EXAMPLES_KEY}' is expected and was not found"
        )
    examples = body[EXAMPLES_KEY]
    if not isinstance(examples, list):
        raise _format_error(body, f"Expecting '{EXAMPLES_KEY}' value to be an list/array")
    if not examples:
        raise _format_error(body, f"'{EXAMPLES_KEY}' value is an empty array")
    target = (
        request.input.example_list_with_context.examples
        if has_context
        else request.input.example_list.examples
    )
    for value in examples:
        example = example_pb2.Example()
        example_from_json(value, example)
        target.add().CopyFrom(example)


def _decimal(value: float) -> float:
    """A float32 as the shortest decimal that reads back as it (TF Serving's WriteDecimal)."""
    if not math.isfinite(value):
        return value
    return float(str(np.float32(value)))


def classification_json(result: Any) -> dict[str, Any]:
    """TF Serving's MakeJsonFromClassificationResult."""
    if not result.classifications:
        raise InvalidArgument("Cannot convert empty ClassificationResults to JSON")
    return {
        RESULTS_KEY: [
            [[c.label, _decimal(c.score)] for c in classifications.classes]
            for classifications in result.classifications
        ]
    }


def regression_json(result: Any) -> dict[str, Any]:
    """TF Serving's MakeJsonFromRegressionResult."""
    if not result.regressions:
        raise InvalidArgument("Cannot convert empty RegressionResults to JSON")
    return {RESULTS_KEY: [_decimal(r.value) for r in result.regressions]}


def rest_methods(examples: ExampleApi, timeout_s: float) -> dict[str, RestMethod]:
    """``{"classify": handler, "regress": handler}`` for RestApi's method table."""

    async def classify(spec: ModelRequest, body: Any) -> Any:
        request = classification_pb2.ClassificationRequest()
        fill_request_from_json(body, spec, request)
        response = await examples.classify(_with_signature(spec, request), request, timeout_s)
        return classification_json(response.result)

    async def regress(spec: ModelRequest, body: Any) -> Any:
        request = regression_pb2.RegressionRequest()
        fill_request_from_json(body, spec, request)
        response = await examples.regress(_with_signature(spec, request), request, timeout_s)
        return regression_json(response.result)

    return {"classify": classify, "regress": regress}


def _with_signature(spec: ModelRequest, request: Any) -> ModelRequest:
    return ModelRequest(spec.name, spec.version, spec.label, request.model_spec.signature_name)
