"""A daemon whose models are all TF Lite runs without TensorFlow, answers the official client,
and imports TensorFlow only when a reload adds a SavedModel."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from servingd.tools.export_models import export_half_plus_two, export_tflite
from support.servingd_process import ServingdProcess
from support.tflite_models import model_config

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def tensorflow_mapped(server: ServingdProcess) -> bool:
    assert server.proc is not None
    return "libtensorflow" in Path(f"/proc/{server.proc.pid}/maps").read_text()


def predict_half(channel: grpc.Channel, name: str) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [3.0]], dtype=tf.float32))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return tf.make_ndarray(stub.Predict(request, timeout=30).outputs["y"]).ravel().tolist()


def test_tflite_only_daemon_has_no_tensorflow_until_a_saved_model_comes(tmp_path: Path) -> None:
    saved = export_half_plus_two(tmp_path / "saved" / "1").parent
    lite = export_tflite(saved / "1", tmp_path / "lite" / "1").parent
    config = model_config({"lite": lite}, tmp_path / "models.config", {"lite": "tflite"})
    flags = [f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"]
    with ServingdProcess(flags) as server:
        server.wait_healthy()
        channel = server.channel()
        assert predict_half(channel, "lite") == [2.5, 3.5]
        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata_request.model_spec.name = "lite"
        metadata_request.metadata_field.append("signature_def")
        metadata = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
            metadata_request, timeout=30
        )
        signatures = get_model_metadata_pb2.SignatureDefMap()
        metadata.metadata["signature_def"].Unpack(signatures)
        assert list(signatures.signature_def["serving_default"].inputs) == ["x"]
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "lite"
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            status_request, timeout=30
        )
        assert [s.state for s in status.model_version_status] == [AVAILABLE]
        assert not tensorflow_mapped(server), "a TF Lite-only daemon loaded TensorFlow"

        # A reload that adds a SavedModel imports TensorFlow then, and both are served.
        model_config({"lite": lite, "saved": saved}, config, {"lite": "tflite"})
        deadline = time.monotonic() + 120
        while True:
            try:
                answer = predict_half(channel, "saved")
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.2)
        np.testing.assert_allclose(answer, [2.5, 3.5])
        assert predict_half(channel, "lite") == [2.5, 3.5]
        assert tensorflow_mapped(server)
        assert "TensorFlow imported for the first SavedModel version" in server.output()
