"""Health keeps answering through a mix of slow, abandoned and fast requests.

The spin model (tests/support/spin_model.py) runs as long as the request asks: the slow
requests here ask for a run that never ends on its own (10**12 turns of a tf.while_loop),
so only the deadline TensorFlow enforces ends them. One client loops over fast Predicts,
a slow one with a 0.2 s deadline, a slow one cancelled after 0.2 s (with a 1 s deadline)
and a slow REST :predict abandoned after 0.2 s (the REST timeout is 1 s); meanwhile gRPC
health and /healthz are probed every 50 ms.

The bound on a probe is generous (1 s) on purpose: the box is shared and a probe may wait
for a core. It still tells the mechanism apart: a model run on the event-loop thread
(which TensorFlow cannot interrupt there) would hold every probe until the run ended,
that is never. tests/unit/test_runs_off_the_loop.py shows the mechanism itself: no model
run, nor large decoding, happens on the loop. The probes' p99 and their share within
100 ms are figures of the run.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from reliability.conftest import soak_count
from support.servingd_process import ServingdProcess
from support.spin_model import export_spin, spin_request

pytestmark = pytest.mark.slow

FOREVER = 10**12  # turns of the spin loop: no run of it ends on its own
PROBE_BOUND_S = 1.0


def _abandoned_rest_predict(port: int) -> None:
    """A :predict for a never-ending run whose client hangs up after 0.2 s."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.2)
    try:
        body = json.dumps({"inputs": {"n": FOREVER}})
        connection.request("POST", "/v1/models/spin:predict", body)
        connection.getresponse().read()
    except TimeoutError:
        pass
    finally:
        connection.close()


def test_health_answers_through_slow_cancelled_and_fast_requests(
    tmp_path: Path, figure: Callable[..., str]
) -> None:
    seconds = soak_count(6, 60)
    export_spin(tmp_path / "spin" / "1")
    with ServingdProcess(
        [
            "--model_name=spin",
            f"--model_base_path={tmp_path / 'spin'}",
            "--rest_api_timeout_in_ms=1000",
        ]
    ) as server:
        server.wait_healthy()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        assert stub.Predict(spin_request(10), timeout=30).outputs["y"].int64_val == [10]

        latencies: list[float] = []
        failures: list[str] = []
        done = threading.Event()

        def probe() -> None:
            health = health_pb2_grpc.HealthStub(server.channel())
            while not done.is_set():
                start = time.perf_counter()
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                    connection = http.client.HTTPConnection(
                        "127.0.0.1", server.rest_port, timeout=10
                    )
                    connection.request("GET", "/healthz")
                    assert connection.getresponse().status == 200
                    connection.close()
                except Exception as exc:
                    failures.append(repr(exc))
                latencies.append(time.perf_counter() - start)
                done.wait(0.05)

        codes: dict[str, int] = {}

        def count(code: str) -> None:
            codes[code] = codes.get(code, 0) + 1

        prober = threading.Thread(target=probe)
        prober.start()
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                for _ in range(10):
                    stub.Predict(spin_request(10), timeout=30)
                    count("fast_ok")
                try:
                    stub.Predict(spin_request(FOREVER), timeout=0.2)
                except grpc.RpcError as exc:
                    count(f"slow_{exc.code().name}")
                call = stub.Predict.future(spin_request(FOREVER), timeout=1.0)
                time.sleep(0.2)
                call.cancel()
                count("cancelled")
                _abandoned_rest_predict(server.rest_port)
                count("rest_abandoned")
        finally:
            done.set()
            prober.join(30)
        # Still serving, and the runs cut by their deadlines have ended.
        assert stub.Predict(spin_request(10), timeout=30).outputs["y"].int64_val == [10]

    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    within = sum(1 for s in ordered if s <= 0.1) / len(ordered)
    print(
        figure(
            "slow_requests_health",
            seconds=seconds,
            probes=len(ordered),
            p99_ms=f"{p99 * 1000:.1f}",
            max_ms=f"{ordered[-1] * 1000:.1f}",
            within_100ms=f"{within:.3f}",
            failures=len(failures) + sum(1 for s in ordered if s >= PROBE_BOUND_S),
            **codes,
        )
    )
    assert not failures, failures[:5]
    assert codes.get("slow_DEADLINE_EXCEEDED", 0) == codes["cancelled"] >= 1
    assert ordered[-1] < PROBE_BOUND_S
