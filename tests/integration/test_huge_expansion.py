"""A tiny request that declares a huge tensor is expanded, run and answered off the loop.

TensorFlow pads a TensorProto's values out with its last one, so a 40-byte Predict may
declare [16000000, 1] with a single float_val (under the 64 Mi element cap). Decoding it,
encoding the 16 M-element answer and serializing that answer take seconds of CPU; none of
it may happen on the event-loop thread (the daemon's main thread), which must stay free
for health checks. Shown by where the CPU time went (/proc, per thread), not by a race
against the clock: the main thread must have spent under half of what the request cost
(it still hands the answer's bytes to gRPC: about a sixth; with the work on the loop, over
9 tenths).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from support.proc_threads import threads
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

ROWS = 16_000_000


def _ticks(pid: int) -> tuple[int, int]:
    """(CPU ticks of the main thread, of the whole process)."""
    per_thread = threads(pid)
    return per_thread[pid][2], sum(ticks for _, _, ticks in per_thread.values())


def test_a_broadcast_request_is_expanded_and_answered_off_the_loop(
    testdata: Path,
) -> None:
    base = testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess(["--model_name=hp2", f"--model_base_path={base}"]) as server:
        server.wait_healthy()
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "hp2"
        tensor = request.inputs["x"]
        tensor.dtype = 1  # DT_FLOAT
        tensor.tensor_shape.dim.add(size=ROWS)
        tensor.tensor_shape.dim.add(size=1)
        tensor.float_val.append(1.5)
        assert len(request.SerializeToString()) < 64
        options = [("grpc.max_receive_message_length", 2**31 - 1)]
        channel = grpc.insecure_channel(server.grpc_target, options=options)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        health = health_pb2_grpc.HealthStub(server.channel())
        pid = server.proc.pid

        main_before, total_before = _ticks(pid)
        reply = stub.Predict(request, timeout=300)
        main_after, total_after = _ticks(pid)
        channel.close()

        values = reply.outputs["y"].float_val
        assert len(values) == ROWS and values[0] == values[-1] == 2.75
        spent, on_main = total_after - total_before, main_after - main_before
        print(f"request cost {spent} ticks, {on_main} of them on the main thread")
        assert spent >= 20  # the work was measurable
        assert on_main * 2 < spent
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=30).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        assert "Traceback" not in server.output()
