"""Classify and Regress through the batch scheduler, as TF Serving batches them.

An in-process ModelServer serves saved_model_half_plus_two_cpu twice: "tfs"
batched (its own batching section), "tfs_plain" not. Requests go through the official
stubs on loopback gRPC (and one over REST). Expected values are TF Serving's: y = 0.5x + 2
(classify_x_to_y, regress_x_to_y) and y2 = 0.5x + 3 (regress_x_to_y2).
"""

from __future__ import annotations

import concurrent.futures
import json
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

from servingd.batching import metrics
from servingd.batching.parameters import BatchingParameters
from servingd.config.models import ModelConfig
from servingd.config.settings import ServerSettings
from servingd.core.ids import ServableId
from support.inprocess_server import InProcessServer, model_server_in_thread
from support.servingd_process import free_ports

# Closes a batch after 20 ms unless 8 examples are queued; no splitting, so a request of
# more than 8 examples is refused as TF Serving refuses it.
PARAMS = BatchingParameters(
    max_batch_size=8, batch_timeout_micros=20_000, max_enqueued_batches=100, num_batch_threads=1
)
REGRESS = "tensorflow/serving/regress"
CLASSIFY = "tensorflow/serving/classify"


@pytest.fixture(scope="module")
def running(testdata: Path) -> Iterator[InProcessServer]:
    base = str(testdata / "saved_model_half_plus_two_cpu")
    grpc_port, rest_port = free_ports(2)
    settings = ServerSettings(
        grpc_port=grpc_port,
        grpc_bind_address="127.0.0.1",
        rest_port=rest_port,
        rest_bind_address="127.0.0.1",
        models=(
            ModelConfig("tfs", base, batching=PARAMS, origin="test"),
            ModelConfig("tfs_plain", base, origin="test"),
        ),
        file_system_poll_wait_s=0.0,
        version_settle_s=0.0,
    )
    with model_server_in_thread(settings) as running:
        assert running.server.batching.parameters_for(ServableId("tfs", 123)) == PARAMS
        assert running.server.batching.parameters_for(ServableId("tfs_plain", 123)) is None
        yield running


@pytest.fixture(scope="module")
def stub(running: InProcessServer) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(running.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def with_examples(request: Any, model: str, signature: str, xs: list[float]) -> Any:
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for x in xs:
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    return request


def regression(model: str, signature: str, xs: list[float]) -> Any:
    return with_examples(regression_pb2.RegressionRequest(), model, signature, xs)


def classification(model: str, xs: list[float]) -> Any:
    return with_examples(classification_pb2.ClassificationRequest(), model, "classify_x_to_y", xs)


def regressed(reply: Any) -> list[float]:
    return [r.value for r in reply.result.regressions]


def scores(reply: Any) -> list[float]:
    return [c.classes[0].score for c in reply.result.classifications]


def runs(model: str) -> float:
    return metrics.BATCHING_WRAPPED_RUN_COUNT.value(model)


def test_concurrent_classify_and_regress_get_exactly_their_examples(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    # (kind, example count, first x): mixed sizes 1..8 on three signatures at once.
    calls = [(("y", "y2", "c")[i % 3], 1 + (i * 5) % 8, float(10 * i)) for i in range(45)]

    def call(kind: str, n: int, first: float) -> tuple[list[float], Any]:
        xs = [first + k for k in range(n)]
        if kind == "c":
            return xs, scores(stub.Classify(classification("tfs", xs), timeout=60))
        signature = "regress_x_to_y" if kind == "y" else "regress_x_to_y2"
        return xs, regressed(stub.Regress(regression("tfs", signature, xs), timeout=60))

    before = runs("tfs")
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda c: call(*c), calls))
    for (kind, _n, _first), (xs, got) in zip(calls, results, strict=True):
        offset = 3.0 if kind == "y2" else 2.0
        assert got == [0.5 * x + offset for x in xs]
    batches = runs("tfs") - before
    assert 0 < batches < len(calls)  # merged into fewer TensorFlow runs


def test_unbatched_model_and_multi_inference_bypass_the_scheduler(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    before = runs("tfs"), runs("tfs_plain")
    reply = stub.Regress(regression("tfs_plain", "regress_x_to_y", [2.0, 4.0]), timeout=30)
    assert regressed(reply) == [3.0, 4.0]
    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY)):
        task = multi.tasks.add()
        task.model_spec.name = "tfs"
        task.model_spec.signature_name = signature
        task.method_name = method
    multi.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    results = stub.MultiInference(multi, timeout=30).results
    assert results[0].regression_result.regressions[0].value == 3.0
    assert results[1].classification_result.classifications[0].classes[0].score == 3.0
    assert (runs("tfs"), runs("tfs_plain")) == before


def test_batched_reply_names_the_version_and_signature(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    reply = stub.Classify(classification("tfs", [2.0]), timeout=30)
    assert reply.model_spec.name == "tfs"
    assert reply.model_spec.signature_name == "classify_x_to_y"
    assert reply.model_spec.version.value == 123
    assert len(reply.result.classifications[0].classes) == 1
    assert reply.result.classifications[0].classes[0].label == ""


def error_of(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value


@pytest.mark.parametrize(
    ("signature", "xs", "message"),
    [
        ("no_such_signature", [1.0], "No signature was found with the name: no_such_signature"),
        ("regress_x_to_y", [], "Input is empty."),
        ("classify_x_to_y", [1.0], "No regression outputs found in SignatureDef"),
    ],
)
def test_bad_request_fails_alone_with_the_unbatched_error(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
    signature: str,
    xs: list[float],
    message: str,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        good = [
            pool.submit(stub.Regress, regression("tfs", "regress_x_to_y", [float(i)]), timeout=30)
            for i in range(3)
        ]
        batched = error_of(stub.Regress, regression("tfs", signature, xs))
        plain = error_of(stub.Regress, regression("tfs_plain", signature, xs))
        assert [regressed(f.result()) for f in good] == [[2.0], [2.5], [3.0]]
    assert batched.code() == plain.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in batched.details()
    assert batched.details() == plain.details().replace("tfs_plain", "tfs")


def test_more_examples_than_a_batch_is_refused_without_splitting(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    error = error_of(stub.Regress, regression("tfs", "regress_x_to_y", [1.0] * 9))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 9 is larger than maximum input batch size 8" in error.details()
    assert "[model tfs, version 123]" in error.details()


def test_rest_regress_of_a_batched_model(running: InProcessServer) -> None:
    before = runs("tfs")
    body = json.dumps({"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 6.0}]})
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.rest_port}/v1/models/tfs:regress",
        data=body.encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert json.loads(reply.read()) == {"results": [3.0, 5.0]}
    assert runs("tfs") > before
