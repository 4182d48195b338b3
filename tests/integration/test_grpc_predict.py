"""gRPC Predict and GetModelStatus end to end, with the official TF Serving client stubs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from support.models import copy_version, corrupt_version, slow_copy_version
from support.servingd_process import ServingdProcess

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def predict_request(
    name: str, xs: list[float], version: int | None = None
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(xs, dtype=tf.float32, shape=[len(xs)]))
    return request


def model_status(
    channel: grpc.Channel, name: str
) -> dict[int, get_model_status_pb2.ModelVersionStatus]:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    reply = stub.GetModelStatus(request, timeout=10)
    return {s.version: s for s in reply.model_version_status}


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.parametrize(
    "model_dir", ["saved_model_half_plus_two_cpu", "saved_model_half_plus_two_tf2_cpu"]
)
def test_predict_half_plus_two(testdata: Path, model_dir: str) -> None:
    base_path = testdata / model_dir
    with ServingdProcess(
        ["--model_name=half_plus_two", f"--model_base_path={base_path}"], rest=False
    ) as server:
        server.wait_healthy()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        reply = stub.Predict(predict_request("half_plus_two", [1.0, 2.0, 5.0]), timeout=30)
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]).ravel(), [2.5, 3.0, 4.5])
        assert reply.model_spec.name == "half_plus_two"
        assert reply.model_spec.version.value == 123
        assert reply.model_spec.signature_name == "serving_default"
        status = model_status(server.channel(), "half_plus_two")
        assert status[123].state == AVAILABLE
        # An unknown model and an unknown version are NOT_FOUND, as in TF Serving.
        with pytest.raises(grpc.RpcError) as missing:
            stub.Predict(predict_request("nope", [1.0]), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as missing_version:
            stub.Predict(predict_request("half_plus_two", [1.0], version=7), timeout=10)
        assert missing_version.value.code() == grpc.StatusCode.NOT_FOUND
        assert "half_plus_two" in missing_version.value.details()


@pytest.mark.slow
def test_rollover_under_load_loses_no_request(testdata: Path, tmp_path: Path) -> None:
    versions = testdata / "saved_model_half_plus_two_2_versions"
    base = tmp_path / "half_plus_two"
    base.mkdir()
    copy_version(versions / "00000123", base, 123)
    with ServingdProcess(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=1",
            "--version_settle_seconds=1",
        ],
        rest=False,
    ) as server:
        server.wait_healthy()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        failures: list[str] = []
        seen_versions: list[int] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    reply = stub.Predict(
                        predict_request("half_plus_two", [1.0, 2.0, 5.0]), timeout=30
                    )
                    seen_versions.append(reply.model_spec.version.value)
                    got = tf.make_ndarray(reply.outputs["y"]).ravel().tolist()
                    if got != [2.5, 3.0, 4.5]:
                        failures.append(f"wrong answer {got}")
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            slow_copy_version(versions / "00000124", base, 124, pause_s=0.1)
            wait_for(lambda: seen_versions[-50:].count(124) == 50, 120, "responses from 124")
            wait_for(
                lambda: model_status(server.channel(), "half_plus_two")[123].state == END,
                60,
                "version 123 to end",
            )
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert failures == []
        switch = seen_versions.index(124)
        assert set(seen_versions[:switch]) == {123}
        status = model_status(server.channel(), "half_plus_two")
        assert status[124].state == AVAILABLE
        assert status[123].state == END and not status[123].status.error_message
        assert server.output().count("Traceback") == 0


@pytest.mark.slow
def test_corrupt_new_version_is_reported_and_old_keeps_serving(
    testdata: Path, tmp_path: Path
) -> None:
    versions = testdata / "saved_model_half_plus_two_2_versions"
    base = tmp_path / "half_plus_two"
    base.mkdir()
    copy_version(versions / "00000123", base, 123)
    with ServingdProcess(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={base}",
            "--max_num_load_retries=1",
            "--load_retry_interval_micros=200000",
            "--version_settle_seconds=0.2",
        ],
        rest=False,
    ) as server:
        server.wait_healthy()
        corrupt_version(versions / "00000124", base, 124)
        wait_for(
            lambda: (
                model_status(server.channel(), "half_plus_two").get(124, None) is not None
                and model_status(server.channel(), "half_plus_two")[124].state == END
            ),
            60,
            "version 124 to fail",
        )
        status = model_status(server.channel(), "half_plus_two")
        assert status[124].status.error_code != 0
        message = status[124].status.error_message
        assert "124" in message and "half_plus_two" in message
        assert status[123].state == AVAILABLE
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        reply = stub.Predict(predict_request("half_plus_two", [1.0, 2.0, 5.0]), timeout=30)
        assert reply.model_spec.version.value == 123
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]).ravel(), [2.5, 3.0, 4.5])
