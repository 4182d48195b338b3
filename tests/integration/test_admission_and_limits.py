"""Overload and hostile input against one real server: caps, size limits, path traversal.

The server runs a "spin" model whose run time the test chooses, with a cap of two
inference requests in flight, small size limits and a bearer token for reload.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from support.servingd_process import ServingdProcess
from support.spin_model import export_spin, rest_spins, spin_request

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token-for-tests"
MAX_ELEMENTS = 1000
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingdProcess]:
    base = tmp_path_factory.mktemp("spin")
    export_spin(base / "1")
    token_file = base.parent / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with ServingdProcess(
        [
            "--model_name=spin",
            f"--model_base_path={base}",
            "--max_in_flight_requests=2",
            f"--max_tensor_elements={MAX_ELEMENTS}",
            f"--rest_api_max_body_bytes={MAX_BODY}",
            f"--grpc_max_receive_message_bytes={MAX_BODY}",
            "--rest_api_timeout_in_ms=2000",
            f"--admin_token_file={token_file}",
            "--monitoring_config_file=" + str(_monitoring(base.parent)),
        ]
    ) as process:
        process.wait_healthy()
        yield process


def _monitoring(directory: Path) -> Path:
    path = directory / "monitoring.config"
    path.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    return path


def rest(
    server: ServingdProcess,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.rest_port}{path}"
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            raw = reply.read()
            status = reply.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def spins_per_second(stub: prediction_service_pb2_grpc.PredictionServiceStub) -> float:
    stub.Predict(spin_request(10), timeout=60)  # the first run is slower (graph setup)
    start = time.perf_counter()
    stub.Predict(spin_request(200_000), timeout=60)
    return 200_000 / (time.perf_counter() - start)


def test_over_the_in_flight_cap_is_refused_at_once_and_health_keeps_answering(
    server: ServingdProcess,
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    # About eight seconds of work each when measured; under load they only take longer,
    # which keeps both in flight while the probes below run.
    long_run = int(spins_per_second(stub) * 8)
    done: list[int] = []
    errors: list[grpc.RpcError] = []

    def long_request() -> None:
        try:
            reply = stub.Predict(spin_request(long_run), timeout=120)
            done.append(int(tf.make_ndarray(reply.outputs["y"])))
        except grpc.RpcError as exc:
            errors.append(exc)

    busy = [threading.Thread(target=long_request) for _ in range(2)]
    for t in busy:
        t.start()
    try:
        # Let both long requests be admitted before probing: a probe admitted first would
        # take one of the two slots itself and turn a long request away instead.
        time.sleep(2.0)
        assert errors == [], errors
        refused = None
        for _ in range(100):
            try:
                stub.Predict(spin_request(1), timeout=10)
            except grpc.RpcError as exc:
                refused = exc
                break
            time.sleep(0.02)
        assert refused is not None, "the third request was never refused"
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert "overloaded" in (refused.details() or "")
        status, body = rest(server, "/v1/models/spin:predict", json.dumps({"inputs": 1}).encode())
        assert status == 503 and "overloaded" in body["error"]
        # Health, status, metadata and metrics are not counted against the cap.
        health = health_pb2_grpc.HealthStub(server.channel())
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert rest(server, "/healthz")[0] == 200
        assert rest(server, "/v1/models/spin")[0] == 200
        metrics_status, metrics = rest(server, "/metrics")
        assert metrics_status == 200
        assert ':servingd:admission_rejected_count{scope="server"}' in metrics
    finally:
        for t in busy:
            t.join(120)
    assert errors == [], errors
    assert done == [long_run, long_run]
    # Recovered: the next request is served.
    reply = stub.Predict(spin_request(5), timeout=30)
    assert int(tf.make_ndarray(reply.outputs["y"])) == 5


def test_tensor_element_limit_is_checked_before_decoding(server: ServingdProcess) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    request = spin_request(1)
    # A shape of 10^12 elements carried by a single value: TensorFlow would pad it out.
    huge = request.inputs["pad"]
    huge.dtype = tf.float32.as_datatype_enum
    huge.tensor_shape.dim.add(size=10**12)
    huge.float_val.append(0.0)
    with pytest.raises(grpc.RpcError) as too_many:
        stub.Predict(request, timeout=30)
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--max_tensor_elements" in (too_many.value.details() or "")
    negative = spin_request(1)
    negative.inputs["n"].tensor_shape.dim.add(size=-5)
    with pytest.raises(grpc.RpcError) as bad_shape:
        stub.Predict(negative, timeout=30)
    assert bad_shape.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    body = json.dumps({"inputs": {"n": [1] * (MAX_ELEMENTS + 1)}}).encode()
    status, reply = rest(server, "/v1/models/spin:predict", body)
    assert status == 400 and "--max_tensor_elements" in reply["error"]


def test_request_size_limits_give_clear_errors(server: ServingdProcess) -> None:
    status, reply = rest(server, "/v1/models/spin:predict", b" " * (MAX_BODY + 1))
    assert status == 413
    assert "--rest_api_max_body_bytes" in reply["error"]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    request = spin_request(1)
    request.inputs["pad"].CopyFrom(tf.make_tensor_proto(np.zeros(MAX_BODY, np.uint8)))
    with pytest.raises(grpc.RpcError) as too_big:
        stub.Predict(request, timeout=30)
    assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_json_nesting_gives_a_400_not_a_crash(server: ServingdProcess) -> None:
    for depth in (70, 5000, 30_000):
        body = b'{"inputs": {"n": ' + b"[" * depth + b"1" + b"]" * depth + b"}}"
        status, reply = rest(server, "/v1/models/spin:predict", body)
        assert status == 400, (depth, reply)
        assert reply["error"]
    assert rest(server, "/healthz")[0] == 200


def test_unknown_routes_and_methods_answer_json_errors(server: ServingdProcess) -> None:
    status, reply = rest(server, "/v2/nothing")
    assert status == 404 and "error" in reply


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/..%2F..%2Fetc%2Fpasswd",
        "/v1/models/%2E%2E/versions/1",
        "/v1/models/spin/labels/..%2F..",
        "/v1/models/spin/versions/..%2F1",
        "/v1/models/..%2Fspin:predict",
        "/v1/models/spin%00:predict",
    ],
)
def test_path_traversal_through_rest_fails_cleanly(server: ServingdProcess, path: str) -> None:
    body = json.dumps({"inputs": 1}).encode() if path.endswith(":predict") else None
    status, reply = rest(server, path, body)
    assert status in (400, 404), (path, status, reply)
    assert "root:" not in json.dumps(reply)


@pytest.mark.parametrize("name", ["../spin", "/etc/passwd", "spin/../../x", "..", "spin\x00"])
def test_path_traversal_through_grpc_fails_cleanly(server: ServingdProcess, name: str) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(spin_request(1, name=name), timeout=10)
    assert refused.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    labelled = spin_request(1)
    labelled.model_spec.version_label = "../../etc"
    with pytest.raises(grpc.RpcError) as bad_label:
        stub.Predict(labelled, timeout=10)
    assert bad_label.value.code() in (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_reload_needs_the_bearer_token(server: ServingdProcess) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(server.channel())
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name = "spin"
    config.base_path = "/nonexistent-never-loaded"
    config.model_platform = "tensorflow"
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
        with pytest.raises(grpc.RpcError) as refused:
            stub.HandleReloadConfigRequest(request, timeout=10, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Nothing changed: spin still serves.
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    assert int(tf.make_ndarray(prediction.Predict(spin_request(3), timeout=30).outputs["y"])) == 3


def test_slow_and_half_open_connections_do_not_pin_the_server(server: ServingdProcess) -> None:
    # 50 clients that open a connection and send half a request, then stall.
    stalled = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=5)
        sock.sendall(
            b"POST /v1/models/spin:predict HTTP/1.1\r\nHost: x\r\n"
            b'Content-Length: 1000\r\n\r\n{"inputs"'
        )
        stalled.append(sock)
    try:
        # A body is admitted before it is read: two stalled bodies hold the two slots until
        # they time out with 408 (the REST timeout), the others are refused at once (503)
        # without being read; health answers meanwhile.
        assert rest(server, "/healthz")[0] == 200
        answers = []
        for sock in stalled:
            sock.settimeout(10)
            answers.append(sock.recv(4096)[:12])
        assert sorted(answers) == [b"HTTP/1.1 408"] * 2 + [b"HTTP/1.1 503"] * 48, answers
    finally:
        for sock in stalled:
            sock.close()
    # Then the slots are free again.
    body = json.dumps({"inputs": 2}).encode()
    assert rest(server, "/v1/models/spin:predict", body) == (200, {"outputs": 2})


def test_predict_with_an_empty_request_is_a_clean_error(server: ServingdProcess) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    request = predict_pb2.PredictRequest()
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(request, timeout=10)
    assert refused.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


def _never_ending_rest_predicts(server: ServingdProcess) -> Callable[[], None]:
    """Two REST :predicts of never-ending runs; returns how to hang up on them."""
    return rest_spins(server.rest_port, 2)


def _never_ending_grpc_predicts(server: ServingdProcess) -> Callable[[], None]:
    """Two gRPC Predicts of never-ending runs (2 s deadlines); returns how to cancel them."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    calls = [stub.Predict.future(spin_request(10**12), timeout=2.0) for _ in range(2)]

    def cancel() -> None:
        for call in calls:
            call.cancel()

    return cancel


@pytest.mark.parametrize("start", [_never_ending_rest_predicts, _never_ending_grpc_predicts])
def test_a_client_that_hangs_up_or_cancels_frees_its_slot(
    server: ServingdProcess, start: Callable[[ServingdProcess], Callable[[], None]]
) -> None:
    """Two requests of never-ending runs take both slots; their clients hang up (REST) or
    cancel (gRPC) after 0.3 s. The slots come back then, not when the deadline (the REST
    timeout, 2 s; the gRPC deadline, 2 s) ends the runs."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    begin = time.monotonic()
    give_up = start(server)
    time.sleep(0.3)
    give_up()
    admitted = False
    while not admitted and time.monotonic() - begin < 1.7:
        try:
            stub.Predict(spin_request(1), timeout=10)
            admitted = True
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            time.sleep(0.05)
    assert admitted, "the slots stayed taken after their clients hung up"
