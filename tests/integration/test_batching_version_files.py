"""--enable_per_model_batching_parameters: batching_params.pbtxt in a version directory.

An in-process ModelServer (batching on: 8 rows, 20 ms; the flag set) serves the project's
half_plus_two under four names whose version directories differ: "filed" ships a file
allowing 4 rows, "nofile" ships none (so it is not batched, as TF Serving), "own" ships
the same 4-row file but has a batching section of its own (8 rows), and "broken" ships a
file that does not parse. Requests go through the official stubs on loopback gRPC.
"""

from __future__ import annotations

import concurrent.futures
import shutil
from collections.abc import Iterator

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from servingd.batching import metrics
from servingd.batching.parameters import BatchingParameters
from servingd.config.models import ModelConfig
from servingd.config.settings import ServerSettings
from servingd.tools.export_models import export_half_plus_two
from support.inprocess_server import InProcessServer, model_server_in_thread
from support.servingd_process import free_ports

SERVER = BatchingParameters(
    max_batch_size=8,
    batch_timeout_micros=20_000,
    max_enqueued_batches=100,
    num_batch_threads=2,
    thread_pool_name="server_pool",
)
FOUR_ROWS = """\
max_batch_size { value: 4 }
batch_timeout_micros { value: 20000 }
num_batch_threads { value: 7 }
thread_pool_name { value: "ignored_pool" }
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    root = tmp_path_factory.mktemp("per_model_batching")
    exported = export_half_plus_two(root / "export")
    files = {"filed": FOUR_ROWS, "nofile": None, "own": FOUR_ROWS, "broken": "max_batch_size {"}
    for name, text in files.items():
        version = root / name / "1"
        shutil.copytree(exported, version)
        if text is not None:
            (version / "batching_params.pbtxt").write_text(text)
    own = BatchingParameters(max_batch_size=8, batch_timeout_micros=20_000)
    grpc_port, rest_port = free_ports(2)
    settings = ServerSettings(
        grpc_port=grpc_port,
        grpc_bind_address="127.0.0.1",
        rest_port=rest_port,
        rest_bind_address="127.0.0.1",
        models=tuple(
            ModelConfig(
                name, str(root / name), batching=own if name == "own" else None, origin="test"
            )
            for name in files
        ),
        file_system_poll_wait_s=0.0,
        version_settle_s=0.0,
        max_num_load_retries=0,  # "broken" fails at once instead of retrying for minutes
        batching=SERVER,
        per_model_batching_parameters=True,
    )
    with model_server_in_thread(settings) as running:
        yield running


@pytest.fixture(scope="module")
def channel(running: InProcessServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(running.grpc_target) as channel:
        yield channel


def predict(channel: grpc.Channel, name: str, xs: list[float]) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(xs, dtype=tf.float32, shape=[len(xs), 1]))
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return list(tf.make_ndarray(reply.outputs["y"]).ravel())


def runs(model: str) -> float:
    return metrics.BATCHING_WRAPPED_RUN_COUNT.value(model)


def test_a_version_file_sets_the_batching_and_the_server_keeps_the_thread_pool(
    running: InProcessServer, channel: grpc.Channel
) -> None:
    servable_id = running.server.lookup.handle("filed", None, None)
    servable_id.release()
    params = running.server.batching.parameters_for(servable_id.id)
    assert params is not None
    assert (params.max_batch_size, params.batch_timeout_micros) == (4, 20_000)
    assert (params.num_batch_threads, params.thread_pool_name) == (2, "server_pool")
    before = runs("filed")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda i: predict(channel, "filed", [float(i)]), range(16)))
    assert got == [[0.5 * i + 2] for i in range(16)]
    assert 0 < runs("filed") - before < 16
    with pytest.raises(grpc.RpcError) as info:
        predict(channel, "filed", [1.0] * 6)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 6 is larger than maximum input batch size 4" in info.value.details()


def test_a_version_without_the_file_is_not_batched(
    running: InProcessServer, channel: grpc.Channel
) -> None:
    before = runs("nofile")
    assert predict(channel, "nofile", [1.0] * 6) == [2.5] * 6
    assert runs("nofile") == before
    handle = running.server.lookup.handle("nofile", None, None)
    handle.release()
    assert running.server.batching.parameters_for(handle.id) is None


def test_a_model_with_its_own_batching_section_ignores_the_file(channel: grpc.Channel) -> None:
    before = runs("own")
    assert predict(channel, "own", [2.0] * 6) == [3.0] * 6  # 8 rows allowed, not the file's 4
    assert runs("own") == before + 1


def test_a_file_that_does_not_parse_fails_only_that_version(
    running: InProcessServer, channel: grpc.Channel
) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "broken"
    reply = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    (version,) = reply.model_version_status
    assert version.state == get_model_status_pb2.ModelVersionStatus.END
    assert version.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    message = version.status.error_message
    assert "broken" in message and "batching_params.pbtxt" in message, message
    assert predict(channel, "filed", [4.0]) == [4.0]  # the others serve on
