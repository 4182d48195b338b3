"""Bad input for a while from four clients: each gets its own status code, no traceback,
and the daemon's log stays small.

Each client cycles through requests that once answered 5xx with a traceback or broke the
client: a tensor of 65 dimensions (INVALID_ARGUMENT), bytes that are no PredictRequest
(INTERNAL, as TF Serving), a lone surrogate in a REST string (400), a REST body labelled
gzip that is not (400; a real gzip body is served), a 100 KB model name and 10,000 unknown
input names (NOT_FOUND and INVALID_ARGUMENT with the message cut under gRPC's 16 KiB
metadata limit), and a malformed HTTP request line (400). 60 s under make soak; under
1 MB of log whatever the length (the log budget: apis/log_budget.py).
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from reliability.conftest import soak_count
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

CLIENTS = 4
LOG_LIMIT_BYTES = 1_000_000


def _predict(name: str = "hp2") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    return request


def _deep_tensor() -> predict_pb2.PredictRequest:
    request = _predict()
    tensor = request.inputs["x"]
    tensor.dtype = 1
    for _ in range(65):
        tensor.tensor_shape.dim.add(size=1)
    tensor.float_val.append(1.0)
    return request


def _many_inputs() -> predict_pb2.PredictRequest:
    request = _predict()
    for i in range(10_000):
        tensor = request.inputs[f"unknown_input_{i}"]
        tensor.dtype = 1
        tensor.float_val.append(1.0)
    return request


def _rest(port: int, body: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/v1/models/hp2:predict", body, headers)
        reply = connection.getresponse()
        payload = json.loads(reply.read())
        assert "error" in payload or "predictions" in payload
        return reply.status
    finally:
        connection.close()


def _malformed_http(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GARBAGE /\x00 HTTP/1.1\r\n\r\n")
        return int(sock.recv(4096).split(b" ", 2)[1])


def _cases(server: ServingdProcess) -> list[tuple[str, Callable[[], str]]]:
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    raw_predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    port = server.rest_port
    surrogate = b'{"signature_name": "classify_x_to_y", "instances": ["\\ud800"]}'
    good = json.dumps({"instances": [1.0, 2.0]}).encode()

    def grpc_code(call: Callable[[], object]) -> str:
        try:
            call()
        except grpc.RpcError as exc:
            assert len(exc.details() or "") < 16_000
            return str(exc.code().name)
        return "OK"

    return [
        ("INVALID_ARGUMENT", lambda: grpc_code(lambda: stub.Predict(_deep_tensor(), timeout=30))),
        ("INTERNAL", lambda: grpc_code(lambda: raw_predict(b"\xff\xff\xff\xff", timeout=30))),
        ("NOT_FOUND", lambda: grpc_code(lambda: stub.Predict(_predict("m" * 100_000), timeout=30))),
        ("INVALID_ARGUMENT", lambda: grpc_code(lambda: stub.Predict(_many_inputs(), timeout=30))),
        ("400", lambda: str(_rest(port, surrogate, {"Content-Type": "application/json"}))),
        ("400", lambda: str(_rest(port, good, {"Content-Encoding": "gzip"}))),
        ("200", lambda: str(_rest(port, gzip.compress(good), {"Content-Encoding": "gzip"}))),
        ("400", lambda: str(_malformed_http(port))),
    ]


def test_bad_input_soak(testdata: Path, figure: Callable[..., str]) -> None:
    seconds = soak_count(5, 60)
    base = testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess(["--model_name=hp2", f"--model_base_path={base}"]) as server:
        server.wait_healthy()
        log_before = len(server.output().encode())
        outcomes: Counter[str] = Counter()
        wrong: list[str] = []
        lock = threading.Lock()
        end = time.monotonic() + seconds

        def client() -> None:
            cases = _cases(server)
            while time.monotonic() < end:
                for expected, case in cases:
                    try:
                        got = case()
                    except Exception as exc:  # the client broke: a finding too
                        got = repr(exc)[:200]
                    with lock:
                        outcomes[got] += 1
                        if got != expected:
                            wrong.append(f"{expected} -> {got}")

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 120)
        server.assert_running()
        log = server.output()
    log_bytes = len(log.encode()) - log_before
    print(
        figure(
            "bad_input_soak",
            seconds=seconds,
            clients=CLIENTS,
            requests=sum(outcomes.values()),
            log_bytes=log_bytes,
            tracebacks=log.count("Traceback"),
            failures=len(wrong) + log.count("Traceback") + (log_bytes >= LOG_LIMIT_BYTES),
        )
    )
    assert not wrong, wrong[:10]
    assert "Traceback" not in log
    assert log_bytes < LOG_LIMIT_BYTES
