"""Batching end to end: an in-process ModelServer on loopback gRPC/REST, the official client.

One server for the module (half_plus_two exported by the project, served under three
names): "hpt" uses the server-wide batching, "small" a per-model override with a small,
slow-closing queue, "plain" no batching.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from servingd.batching import metrics
from servingd.batching.parameters import BatchingParameters
from servingd.config.models import ModelConfig
from servingd.config.settings import ServerSettings
from servingd.tools.export_models import export_half_plus_two
from support.inprocess_server import InProcessServer, model_server_in_thread
from support.servingd_process import free_ports

SERVER_DEFAULT = BatchingParameters(
    max_batch_size=8,
    batch_timeout_micros=20_000,
    max_enqueued_batches=100,
    num_batch_threads=1,
    allowed_batch_sizes=(2, 4, 8),
)
# Closes only after 1 s unless full; room for one batch of 4 rows.
SMALL = BatchingParameters(
    max_batch_size=4, batch_timeout_micros=1_000_000, max_enqueued_batches=1, num_batch_threads=1
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    base = tmp_path_factory.mktemp("hpt") / "half_plus_two"
    export_half_plus_two(base / "1")
    models = (
        ModelConfig("hpt", str(base), origin="test"),
        ModelConfig("small", str(base), batching=SMALL, origin="test"),
        ModelConfig("plain", str(base), origin="test"),
    )
    grpc_port, rest_port = free_ports(2)
    settings = ServerSettings(
        grpc_port=grpc_port,
        grpc_bind_address="127.0.0.1",
        rest_port=rest_port,
        rest_bind_address="127.0.0.1",
        models=models,
        file_system_poll_wait_s=0.0,
        version_settle_s=0.0,
        batching=SERVER_DEFAULT,
    )
    with model_server_in_thread(settings) as running:
        # "plain" is not batched: the server default applies only to models without their
        # own section, so turn it off for "plain" by giving the running server a model list
        # in which it has none and the default is cleared for it.
        running.server.batching.set_parameters({"hpt": SERVER_DEFAULT, "small": SMALL})
        yield running


@pytest.fixture(scope="module")
def stub(running: InProcessServer) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(running.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def request(name: str, xs: list[float]) -> predict_pb2.PredictRequest:
    r = predict_pb2.PredictRequest()
    r.model_spec.name = name
    r.inputs["x"].CopyFrom(tf.make_tensor_proto(xs, dtype=tf.float32, shape=[len(xs), 1]))
    return r


def ys(reply: predict_pb2.PredictResponse) -> list[float]:
    return list(tf.make_ndarray(reply.outputs["y"]).ravel())


def test_concurrent_clients_with_mixed_sizes_get_exactly_their_rows(
    running: InProcessServer, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    runs_before = metrics.BATCHING_WRAPPED_RUN_COUNT.value("hpt")
    sizes = [1 + (i * 7) % 8 for i in range(48)]  # 1..8 rows, mixed
    payloads = []
    start = 0
    for n in sizes:
        payloads.append([float(v) for v in range(start, start + n)])
        start += n
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        replies = list(pool.map(lambda xs: stub.Predict(request("hpt", xs), timeout=60), payloads))
    for xs, reply in zip(payloads, replies, strict=True):
        assert ys(reply) == [0.5 * x + 2 for x in xs]
    runs = metrics.BATCHING_WRAPPED_RUN_COUNT.value("hpt") - runs_before
    assert 0 < runs < len(sizes)  # requests were merged into fewer TensorFlow runs


def test_per_model_override_limits_task_size(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    assert ys(stub.Predict(request("hpt", [1.0] * 6), timeout=30)) == [2.5] * 6  # default: 8
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request("small", [1.0] * 6), timeout=30)  # override: 4
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 6 is larger than maximum input batch size 4" in info.value.details()


def test_full_queue_is_unavailable_over_grpc_and_503_over_rest(
    running: InProcessServer, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    waiting = stub.Predict.future(request("small", [1.0, 2.0, 3.0]), timeout=30)
    key = ("small", 1, "serving_default")
    wait_until(lambda: running.server.batching.scheduler.num_enqueued_tasks(key) == 1)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request("small", [4.0, 5.0]), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "queue" in info.value.details() and "full" in info.value.details()
    body = json.dumps({"instances": [[4.0], [5.0]]}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{running.rest_port}/v1/models/small:predict", data=body
    )
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(req, timeout=30)
    assert http.value.code == 503
    assert "full" in json.loads(http.value.read())["error"]
    assert ys(waiting.result(30)) == [2.5, 3.0, 3.5]


def test_client_deadline_removes_its_task_from_the_queue(
    running: InProcessServer, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    key = ("small", 1, "serving_default")
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request("small", [1.0, 2.0, 3.0]), timeout=0.2)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: running.server.batching.scheduler.num_enqueued_tasks(key) == 0)
    # Its room is free again: a 4-row request fills the batch and runs at once.
    assert ys(stub.Predict(request("small", [0.0] * 4), timeout=30)) == [2.0] * 4


def test_unbatched_model_is_not_routed_through_the_scheduler(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
) -> None:
    before = metrics.BATCHING_WRAPPED_RUN_COUNT.value("plain")
    assert ys(stub.Predict(request("plain", [2.0] * 20), timeout=30)) == [3.0] * 20
    assert metrics.BATCHING_WRAPPED_RUN_COUNT.value("plain") == before


def test_reload_changes_batching_parameters_without_reloading_the_model(
    running: InProcessServer, stub: prediction_service_pb2_grpc.PredictionServiceStub
) -> None:
    server = running.server
    servable_before = server.lookup.handle("small", None, None)
    servable_obj = servable_before.servable
    servable_before.release()
    with pytest.raises(grpc.RpcError):
        stub.Predict(request("small", [1.0] * 10), timeout=30)
    bigger = replace(SMALL, max_batch_size=16, batch_timeout_micros=0)
    models = [
        replace(m, batching=bigger) if m.name == "small" else m for m in server.models.values()
    ]
    running.call(server.reload_models(models, 60))
    assert ys(stub.Predict(request("small", [1.0] * 10), timeout=30)) == [2.5] * 10
    handle = server.lookup.handle("small", None, None)
    try:
        assert handle.servable is servable_obj  # same loaded version: no reload
    finally:
        handle.release()
    running.call(server.reload_models([replace(m) for m in models], 60))
    server.batching.set_parameters({"hpt": SERVER_DEFAULT, "small": bigger})


def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        done.wait(0.02)
    raise AssertionError("condition not reached in time")


_ = Path
