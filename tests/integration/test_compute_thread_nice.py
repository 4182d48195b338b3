"""compute_thread_nice: model work runs at that nice value; the event loop and gRPC do not.

One daemon from a servingd.yaml: the project's MLP twice, one batched and one not (its
runs go to the worker threads). A burst of [64,784] Predicts to each, and
per-thread CPU from /proc/PID/task/*/stat: TensorFlow's compute threads (created while the
first model loaded), the workers and the batch thread must carry the nice value; the main
thread (the event loop) and gRPC's own threads keep the daemon's.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator

import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from servingd.tools.export_models import export_mlp
from support.proc_threads import threads
from support.servingd_process import ServingdProcess

BASE_NICE = os.getpriority(os.PRIO_PROCESS, 0)
COMPUTE_NICE = BASE_NICE + 5
# Threads the C libraries name: gRPC's (and its event engine's), uvloop's; the rest carry
# the process's name (Python threads, TensorFlow's Eigen pool) or TensorFlow's (tf_*).
FRONT_END_PREFIXES = ("grpc", "event_engine", "libuv")

pytestmark = pytest.mark.skipif(COMPUTE_NICE > 19, reason="the test runs at nice > 14")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingdProcess]:
    etc = tmp_path_factory.mktemp("etc")
    mlp = export_mlp(etc / "mlp" / "1").parent
    (etc / "models.d").mkdir()
    (etc / "models.d/batched.yaml").write_text(
        f"base_path: {mlp}\nbatching: {{max_batch_size: 64, batch_timeout_micros: 0}}\n"
    )
    (etc / "models.d/plain.yaml").write_text(f"base_path: {mlp}\n")
    (etc / "servingd.yaml").write_text(
        f"compute_thread_nice: {COMPUTE_NICE}\n"
        "file_system_poll_wait_seconds: 0\n"
        "models_dir: models.d\n"
        "logging: {level: info, target: stderr}\n"
    )
    with ServingdProcess([f"--config={etc / 'servingd.yaml'}"]) as process:
        process.wait_healthy()
        yield process


def burst(server: ServingdProcess, model: str, count: int) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 64
    request.inputs["x"].tensor_shape.dim.add().size = 784
    request.inputs["x"].tensor_content = x.tobytes()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: stub.Predict(request, timeout=60), range(count)))
    assert all(len(r.outputs["probabilities"].float_val) == 640 for r in replies)


@pytest.mark.parametrize("model", ["batched", "plain"])
def test_model_work_runs_at_the_compute_nice_value(server: ServingdProcess, model: str) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    before = threads(pid)
    burst(server, model, 300)
    after = threads(pid)
    gained = {tid: after[tid][2] - before.get(tid, (0, 0, 0))[2] for tid in after}
    _, main_nice, _ = after[pid]
    assert main_nice == BASE_NICE and gained[pid] > 0
    front_end = [t for t, (name, _, _) in after.items() if name.startswith(FRONT_END_PREFIXES)]
    assert front_end and all(after[t][1] == BASE_NICE for t in front_end)
    others = {t: g for t, g in gained.items() if t != pid and t not in front_end}
    lowered = sum(g for t, g in others.items() if after[t][1] == COMPUTE_NICE)
    unchanged = sum(g for t, g in others.items() if after[t][1] != COMPUTE_NICE)
    report = sorted((g, after[t][0], after[t][1]) for t, g in others.items() if g)
    assert lowered >= 20, report  # 0.2 s of CPU at least: the burst did reach TensorFlow
    # Besides the loop, only light work keeps the daemon's own nice value (grpc.aio's
    # poller thread: a few % here); a worker or batch thread left at it takes 15-20 %.
    assert unchanged <= 0.1 * lowered, report
