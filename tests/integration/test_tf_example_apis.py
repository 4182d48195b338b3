"""Classify, Regress, MultiInference (gRPC) and :classify / :regress (REST) end to end.

The real daemon serves saved_model_half_plus_two_cpu (support.testdata); requests go through the
official tensorflow_serving.apis stubs and plain HTTP. Expected values are those of TF
Serving's own tests (tensorflow_model_server_test.py, multi_inference_test.cc): y = 0.5x + 2
(classify_x_to_y, regress_x_to_y) and y2 = 0.5x + 3 (regress_x_to_y2).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from support.servingd_process import ServingdProcess

MODEL = "half_plus_two"
VERSION = 123
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


@pytest.fixture(scope="module")
def server(testdata: Path) -> Iterator[ServingdProcess]:
    base_path = testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess([f"--model_name={MODEL}", f"--model_base_path={base_path}"]) as process:
        process.wait_healthy()
        yield process


@pytest.fixture(scope="module")
def stub(server: ServingdProcess) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(server.channel())


def add_examples(input_proto: Any, *xs: float) -> None:
    for x in xs:
        example = input_proto.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)


def classification_request(signature: str, *xs: float) -> Any:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    add_examples(request.input, *xs)
    return request


def regression_request(signature: str, *xs: float) -> Any:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    add_examples(request.input, *xs)
    return request


def multi_request(*tasks: tuple[str, str], model: str = MODEL) -> Any:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method
    add_examples(request.input, 2.0)
    return request


def rpc_error(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value


# -- gRPC: TF Serving's expected results -----------------------------------------------------


def test_classify(stub: Any) -> None:
    reply = stub.Classify(classification_request("classify_x_to_y", 2.0), timeout=30)
    assert len(reply.result.classifications) == 1
    assert len(reply.result.classifications[0].classes) == 1
    assert reply.result.classifications[0].classes[0].score == 3.0
    assert reply.result.classifications[0].classes[0].label == ""
    assert reply.model_spec.name == MODEL
    assert reply.model_spec.signature_name == "classify_x_to_y"
    assert reply.model_spec.version.value == VERSION


def test_regress(stub: Any) -> None:
    reply = stub.Regress(regression_request("regress_x_to_y", 2.0), timeout=30)
    assert [r.value for r in reply.result.regressions] == [3.0]
    assert reply.model_spec.signature_name == "regress_x_to_y"
    assert reply.model_spec.version.value == VERSION


def test_regress_batch_keeps_example_order(stub: Any) -> None:
    reply = stub.Regress(regression_request("regress_x_to_y2", 1.0, 2.0, 5.0), timeout=30)
    assert [r.value for r in reply.result.regressions] == [3.5, 4.0, 5.5]


def test_example_list_with_context_merges_context_into_every_example(stub: Any) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "regress_x_to_y"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.append(2.0)
    with_context.examples.add()  # only the context's x
    with_context.examples.add().features.feature["x"].float_list.value.append(5.0)  # overrides
    reply = stub.Regress(request, timeout=30)
    assert [r.value for r in reply.result.regressions] == [3.0, 4.5]


def test_multi_inference_regress_and_classify(stub: Any) -> None:
    request = multi_request(("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY))
    reply = stub.MultiInference(request, timeout=30)
    assert len(reply.results) == 2
    assert reply.results[0].regression_result.regressions[0].value == 3.0
    assert reply.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for task, result in zip(request.tasks, reply.results, strict=True):
        assert result.model_spec.name == MODEL
        assert result.model_spec.signature_name == task.model_spec.signature_name
        assert result.model_spec.version.value == VERSION


def test_multi_inference_two_regressions(stub: Any) -> None:
    request = multi_request(("regress_x_to_y", REGRESS), ("regress_x_to_y2", REGRESS))
    reply = stub.MultiInference(request, timeout=30)
    assert [r.regression_result.regressions[0].value for r in reply.results] == [3.0, 4.0]


def test_multi_inference_feeds_each_distinct_input_tensor(testdata: Path) -> None:
    # A model saved with tf.saved_model.save gives each signature its own input tensor
    # (classify_x_to_y_inputs, regress_x_to_y_inputs): current TF Serving feeds the
    # request's examples to each of them, in one run.
    base_path = testdata / "saved_model_half_plus_two_tf2_cpu"
    with ServingdProcess([f"--model_name={MODEL}", f"--model_base_path={base_path}"]) as tf2:
        tf2.wait_healthy()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(tf2.channel())
        request = multi_request(("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY))
        reply = stub.MultiInference(request, timeout=30)
    assert reply.results[0].regression_result.regressions[0].value == 3.0
    assert reply.results[1].classification_result.classifications[0].classes[0].score == 3.0
    assert [r.model_spec.signature_name for r in reply.results] == [
        "regress_x_to_y",
        "classify_x_to_y",
    ]


# -- gRPC: TF Serving's errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "signature", "message"),
    [
        (
            "Classify",
            "regress_x_to_y",
            'Expected classification signature outputs to contain at least one of "classes" '
            'or "scores". Signature was: ',
        ),
        ("Classify", "", "No classification inputs found in SignatureDef: "),
        ("Regress", "classify_x_to_y", "No regression outputs found in SignatureDef: "),
        ("Classify", "nope", "No signature was found with the name: nope"),
        ("Regress", "nope", "No signature was found with the name: nope"),
    ],
)
def test_wrong_signature(stub: Any, method: str, signature: str, message: str) -> None:
    make = classification_request if method == "Classify" else regression_request
    error = rpc_error(getattr(stub, method), make(signature, 2.0))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(message)
    assert f"[model {MODEL}, version {VERSION}]" in error.details()


def test_signature_whose_input_is_not_examples_fails_in_tensorflow(stub: Any) -> None:
    # regress_x2_to_y3 names its float input "inputs": TF Serving feeds it the serialized
    # examples all the same, and TensorFlow refuses them.
    error = rpc_error(stub.Regress, regression_request("regress_x2_to_y3", 2.0))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_empty_input(stub: Any) -> None:
    for call, request in [
        (stub.Classify, classification_request("classify_x_to_y")),
        (stub.Regress, regression_request("regress_x_to_y")),
    ]:
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("Input is empty.")


def test_bad_examples_are_tensorflows_invalid_argument(stub: Any) -> None:
    request = regression_request("regress_x_to_y")
    request.input.example_list.examples.add().features.feature["x"].int64_list.value.append(2)
    error = rpc_error(stub.Regress, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Data types don't match" in error.details()
    missing = regression_request("regress_x_to_y")
    missing.input.example_list.examples.add().features.feature["y"].float_list.value.append(1)
    error = rpc_error(stub.Regress, missing)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Feature: x" in error.details()
    # The model still serves.
    assert stub.Regress(regression_request("regress_x_to_y", 2.0), timeout=30).result


def test_unknown_model_is_not_found(stub: Any) -> None:
    request = classification_request("classify_x_to_y", 2.0)
    request.model_spec.name = "nope"
    assert rpc_error(stub.Classify, request).code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("tasks", "code", "message"),
    [
        (
            [("regress_x_to_y", REGRESS), ("regress_x_to_y", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            [("ThisSignatureDoesNotExist", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Requested signature not found in model graph: ThisSignatureDoesNotExist",
        ),
        (
            [("serving_default", "tensorflow/serving/predict")],
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
    ],
)
def test_multi_inference_errors(
    stub: Any, tasks: list[tuple[str, str]], code: grpc.StatusCode, message: str
) -> None:
    error = rpc_error(stub.MultiInference, multi_request(*tasks))
    assert error.code() == code
    assert error.details().startswith(message)


def test_multi_inference_tasks_must_share_the_model(stub: Any) -> None:
    request = multi_request(("regress_x_to_y", REGRESS))
    other = request.tasks.add()
    other.model_spec.name = "ModelDoesNotExist"
    other.model_spec.signature_name = "regress_x_to_y2"
    other.method_name = REGRESS
    error = rpc_error(stub.MultiInference, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must access the same model name" in error.details()


def test_multi_inference_without_tasks(stub: Any) -> None:
    request = inference_pb2.MultiInferenceRequest()
    add_examples(request.input, 2.0)
    error = rpc_error(stub.MultiInference, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Missing ModelSpec"


def test_multi_inference_empty_input(stub: Any) -> None:
    request = multi_request(("regress_x_to_y", REGRESS))
    request.ClearField("input")
    error = rpc_error(stub.MultiInference, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Input is empty.")


# -- REST ---------------------------------------------------------------------------------------


def post(server: ServingdProcess, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}{path}", data=json.dumps(body).encode()
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_rest_classify_and_regress_as_tf_serving(server: ServingdProcess) -> None:
    # tensorflow_model_server_test.py: testClassifyREST / testRegressREST.
    assert post(
        server,
        f"/v1/models/{MODEL}:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
    ) == (200, {"results": [[["", 3.0]]]})
    assert post(
        server,
        f"/v1/models/{MODEL}:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
    ) == (200, {"results": [3.0]})


def test_rest_context_lists_versions_and_float32_decimals(server: ServingdProcess) -> None:
    status, body = post(
        server,
        f"/v1/models/{MODEL}/versions/{VERSION}:regress",
        {
            "signature_name": "regress_x_to_y",
            "context": {"x": [0.1]},
            "examples": [{}, {"x": [1.5]}],
        },
    )
    # 0.5 * 0.1f + 2 in float32 is written as TF Serving writes it: 2.05, not 2.049999952.
    assert (status, body) == (200, {"results": [2.05, 2.75]})


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("classify", {"signature_name": "classify_x_to_y"}, "key 'examples' is expected"),
        ("regress", {"examples": {"x": 2.0}}, "Expecting 'examples' value to be an list/array"),
        ("regress", {"examples": []}, "'examples' value is an empty array"),
        ("regress", {"signature_name": 7, "examples": [{}]}, "'signature_name' key must be"),
        ("regress", {"examples": [[2.0]]}, "Example must be JSON object but got JSON Array"),
        (
            "regress",
            {"examples": [{"x": [2.0, "a"]}]},
            "Unexpected element type in feature: x expecting type: float",
        ),
        (
            "regress",
            {"examples": [{"x": None}]},
            "Feature: x has element with unexpected JSON type: Null",
        ),
        (
            "regress",
            {"examples": [{"x": 1e300}]},
            "Cannot convert JSON value: 1e+300 to float without loss of precision.",
        ),
        ("classify", {"examples": [{"x": 2.0}]}, "No classification inputs found"),
        (
            "regress",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
            "No regression outputs found",
        ),
    ],
)
def test_rest_errors(server: ServingdProcess, method: str, body: Any, message: str) -> None:
    status, reply = post(server, f"/v1/models/{MODEL}:{method}", body)
    assert status == 400
    assert message in reply["error"]


def test_rest_int_feature_against_float_model_is_tensorflows_error(
    server: ServingdProcess,
) -> None:
    status, reply = post(
        server,
        f"/v1/models/{MODEL}:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 2}]},
    )
    assert status == 400
    assert "Data types don't match" in reply["error"]
