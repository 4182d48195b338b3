"""--model_config_file, HandleReloadConfigRequest, monitoring, health, reflection, UNIX socket."""

from __future__ import annotations

import subprocess
import threading
import urllib.request
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from support.servingd_process import ServingdProcess, servingd_command


def good_config(testdata: Path, tmp_path: Path) -> Path:
    text = (testdata / "good_model_config.txt").read_text()
    text = text.replace(
        "${TEST_HALF_PLUS_TWO_DIR}", str(testdata / "saved_model_half_plus_two_cpu")
    )
    text = text.replace(
        "${TEST_HALF_PLUS_THREE_DIR}", str(testdata / "saved_model_half_plus_three")
    )
    path = tmp_path / "models.config"
    path.write_text(text)
    return path


def predict(channel: grpc.Channel, name: str, x: float = 2.0, timeout: float = 30) -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([x], dtype=tf.float32))
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        request, timeout=timeout
    )
    return float(tf.make_ndarray(reply.outputs["y"]).ravel()[0])


def test_good_model_config_serves_both_models(testdata: Path, tmp_path: Path) -> None:
    config = good_config(testdata, tmp_path)
    with ServingdProcess([f"--model_config_file={config}"]) as server:
        server.wait_healthy()
        assert predict(server.channel(), "half_plus_two") == 3.0
        assert predict(server.channel(), "half_plus_three") == 4.0


def test_bad_model_config_is_refused_with_file_and_position(testdata: Path) -> None:
    bad = testdata / "bad_model_config.txt"
    result = subprocess.run(
        [*servingd_command(), f"--model_config_file={bad}", "--check_config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"{bad}:1:" in result.stderr
    assert "ModelServerConfig" in result.stderr


def test_check_config_validates_without_serving(testdata: Path, tmp_path: Path) -> None:
    config = good_config(testdata, tmp_path)
    result = subprocess.run(
        [*servingd_command(), f"--model_config_file={config}", "--check_config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stderr and "2 model(s)" in result.stderr


@pytest.mark.slow
def test_reload_config_request_swaps_models_while_a_client_calls(
    testdata: Path, tmp_path: Path
) -> None:
    two = testdata / "saved_model_half_plus_two_cpu"
    three = testdata / "saved_model_half_plus_three"
    first = tmp_path / "first.config"
    first.write_text(
        f'model_config_list {{ config {{ name: "half_plus_two" base_path: "{two}" '
        'model_platform: "tensorflow" } }'
    )
    with ServingdProcess([f"--model_config_file={first}"]) as server:
        server.wait_healthy()
        failures: list[str] = []
        calls = 0
        stop = threading.Event()

        def client() -> None:
            nonlocal calls
            channel = grpc.insecure_channel(server.grpc_target)
            while not stop.is_set():
                try:
                    assert predict(channel, "half_plus_two") == 3.0
                    calls += 1
                except (grpc.RpcError, AssertionError) as exc:
                    failures.append(repr(exc))
            channel.close()

        thread = threading.Thread(target=client)
        thread.start()
        try:
            config = model_server_config_pb2.ModelServerConfig()
            for name, path in (("half_plus_two", two), ("half_plus_three", three)):
                model = config.model_config_list.config.add()
                model.name, model.base_path, model.model_platform = name, str(path), "tensorflow"
            request = model_management_pb2.ReloadConfigRequest(config=config)
            stub = model_service_pb2_grpc.ModelServiceStub(server.channel())
            stub.HandleReloadConfigRequest(request, timeout=120)
            # Returns once the new model is available, as TF Serving's does.
            assert predict(server.channel(), "half_plus_three") == 4.0
            # And removing a model unloads it; the other keeps serving.
            del config.model_config_list.config[0]
            stub.HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(config=config), timeout=120
            )
            with pytest.raises(grpc.RpcError) as gone:
                predict(server.channel(), "half_plus_two")
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND
            assert predict(server.channel(), "half_plus_three") == 4.0
        finally:
            stop.set()
            thread.join(30)
        # The client called half_plus_two until it was removed: none may fail before that.
        assert calls > 0
        assert all("NOT_FOUND" in f for f in failures), failures
        # A refused config changes nothing.
        bad = model_server_config_pb2.ModelServerConfig()
        bad.model_config_list.config.add(name="x", base_path="")
        with pytest.raises(grpc.RpcError) as refused:
            stub.HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(config=bad), timeout=30
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "base_path" in refused.value.details()
        assert predict(server.channel(), "half_plus_three") == 4.0


def test_metrics_health_reflection_and_unix_socket(testdata: Path, tmp_path: Path) -> None:
    socket_path = tmp_path / "servingd.sock"
    base = testdata / "saved_model_half_plus_two_cpu"
    monitoring = testdata / "monitoring_config.txt"
    with ServingdProcess(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={base}",
            f"--monitoring_config_file={monitoring}",
            f"--grpc_socket_path={socket_path}",
        ]
    ) as server:
        server.wait_healthy()
        with grpc.insecure_channel(f"unix:{socket_path}") as unix_channel:
            assert predict(unix_channel, "half_plus_two") == 3.0
        with pytest.raises(grpc.RpcError):
            predict(server.channel(), "missing_model")
        url = f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            metrics = reply.read().decode()
        assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"} 1.0' in (
            metrics
        )
        assert 'status="NOT_FOUND"' in metrics
        assert ":tensorflow:serving:request_latency_bucket" in metrics

        health = health_pb2_grpc.HealthStub(server.channel())
        serving = health_pb2.HealthCheckResponse.SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == serving
        per_model = health_pb2.HealthCheckRequest(service="half_plus_two")
        assert health.Check(per_model, timeout=5).status == serving

        reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel())
        replies = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        services = {s.name for r in replies for s in r.list_services_response.service}
        assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"} <= (
            services
        )


@pytest.mark.slow
def test_model_config_file_is_polled_and_a_bad_edit_keeps_the_running_config(
    testdata: Path, tmp_path: Path
) -> None:
    import time

    two = testdata / "saved_model_half_plus_two_cpu"
    three = testdata / "saved_model_half_plus_three"

    def entry(name: str, path: Path) -> str:
        return f'config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }}'

    config = tmp_path / "models.config"
    config.write_text(f"model_config_list {{ {entry('half_plus_two', two)} }}")
    with ServingdProcess(
        [f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"]
    ) as server:
        server.wait_healthy()
        config.write_text(
            "model_config_list { "
            f"{entry('half_plus_two', two)} {entry('half_plus_three', three)} }}"
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                assert predict(server.channel(), "half_plus_three") == 4.0
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.2)
        config.write_text("model_config_list { config { name: ")  # a half-written edit
        deadline = time.monotonic() + 30
        while str(config) not in server.output() or "running" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        assert predict(server.channel(), "half_plus_two") == 3.0
        assert predict(server.channel(), "half_plus_three") == 4.0
