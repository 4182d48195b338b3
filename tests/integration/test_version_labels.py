"""version_labels: lookup by label over gRPC and REST, and TF Serving's availability rule."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from support.servingd_process import ServingdProcess

CONFIG = """
model_config_list {
  config {
    name: "half_plus_two"
    base_path: "%s"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 123 }
    version_labels { key: "canary" value: %d }
  }
}
"""


def predict_by_label(channel: grpc.Channel, label: str) -> int:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return int(stub.Predict(request, timeout=30).model_spec.version.value)


def test_labels_route_requests_and_refuse_unavailable_versions(
    testdata: Path, tmp_path: Path
) -> None:
    base = testdata / "saved_model_half_plus_two_2_versions"
    config = tmp_path / "models.config"
    config.write_text(CONFIG % (base, 124))
    with ServingdProcess([f"--model_config_file={config}"]) as server:
        server.wait_healthy()
        # Labels are applied once the versions are up; give the settle a moment.
        deadline_calls = 0
        while True:
            try:
                assert predict_by_label(server.channel(), "canary") == 124
                break
            except grpc.RpcError:
                deadline_calls += 1
                assert deadline_calls < 100, server.output()
                time.sleep(0.1)
        assert predict_by_label(server.channel(), "stable") == 123
        with pytest.raises(grpc.RpcError) as unknown:
            predict_by_label(server.channel(), "nightly")
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Unrecognized servable version label: nightly" in unknown.value.details()

        url = f"http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two/labels/stable:predict"
        body = json.dumps({"instances": [1.0]}).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as r:
            assert json.loads(r.read()) == {"predictions": [2.5]}

        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "half_plus_two"
        status_request.model_spec.version_label = "canary"
        stub = model_service_pb2_grpc.ModelServiceStub(server.channel())
        statuses = stub.GetModelStatus(status_request, timeout=10).model_version_status
        assert [s.version for s in statuses] == [124]

        # Pointing a label at a version that is not loaded is refused; labels stay as they were.
        moved = text_format.Parse(CONFIG % (base, 999), model_server_config_pb2.ModelServerConfig())
        with pytest.raises(grpc.RpcError) as refused:
            stub.HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(config=moved), timeout=60
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "999" in refused.value.details()
        assert predict_by_label(server.channel(), "canary") == 124
