"""compute_thread_nice: model work runs at that nice value; the event loop and gRPC do not.

One daemon from a servingd.yaml: a "spin" model twice, one batched and one not (its runs go to
the worker threads). One Predict spins a fixed number of loop
iterations (about half a second of CPU); /proc/PID/task/*/stat says which threads gained
that CPU. The threads that ran the model (TensorFlow's compute threads, created while the
first model loaded, the workers, the batch thread) must carry the nice value; the main
thread (the event loop) and gRPC's own threads keep the daemon's. The verdict reads CPU
time and nice values, not rates: a busy machine stretches the run, it does not change
which thread ran it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from support.proc_threads import threads
from support.servingd_process import ServingdProcess
from support.spin_model import export_spin, spin_request

BASE_NICE = os.getpriority(os.PRIO_PROCESS, 0)
COMPUTE_NICE = BASE_NICE + 5
# Threads the C libraries name: gRPC's (and its event engine's), uvloop's; the rest carry
# the process's name (Python threads, TensorFlow's Eigen pool) or TensorFlow's (tf_*).
FRONT_END_PREFIXES = ("grpc", "event_engine", "libuv")

pytestmark = pytest.mark.skipif(COMPUTE_NICE > 19, reason="the test runs at nice > 14")


# Loop iterations of the spin model per Predict: about 0.5 s of CPU (2-3 us each); the
# threads that serve the request around the run use a few milliseconds.
SPINS = 200_000
# CPU ticks (1/100 s) that only the threads running the model gain from one Predict.
RAN_THE_MODEL_TICKS = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingdProcess]:
    etc = tmp_path_factory.mktemp("etc")
    spin = export_spin(etc / "spin" / "1", batched=True).parent
    (etc / "models.d").mkdir()
    (etc / "models.d/batched.yaml").write_text(
        f"base_path: {spin}\nbatching: {{max_batch_size: 8, batch_timeout_micros: 0}}\n"
    )
    (etc / "models.d/plain.yaml").write_text(f"base_path: {spin}\n")
    (etc / "servingd.yaml").write_text(
        f"compute_thread_nice: {COMPUTE_NICE}\n"
        "file_system_poll_wait_seconds: 0\n"
        "version_settle_seconds: 0\n"  # just exported: the only poll must take it
        "models_dir: models.d\n"
        "logging: {level: info, target: stderr}\n"
    )
    with ServingdProcess([f"--config={etc / 'servingd.yaml'}"]) as process:
        process.wait_healthy()
        yield process


@pytest.mark.parametrize("model", ["batched", "plain"])
def test_model_work_runs_at_the_compute_nice_value(server: ServingdProcess, model: str) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    stub.Predict(spin_request(1, model, batched=True), timeout=60)  # first run: graph setup
    before = threads(pid)
    reply = stub.Predict(spin_request(SPINS, model, batched=True), timeout=300)
    assert list(reply.outputs["y"].int64_val) == [SPINS]
    after = threads(pid)
    gained = {tid: after[tid][2] - before.get(tid, ("", 0, 0))[2] for tid in after}
    report = sorted(((g, *after[t][:2]) for t, g in gained.items() if g), reverse=True)
    ran_the_model = {t for t, g in gained.items() if g >= RAN_THE_MODEL_TICKS}
    assert ran_the_model, f"no thread gained the spin's CPU: {report}"
    assert all(after[t][1] == COMPUTE_NICE for t in ran_the_model), report
    # The loop and gRPC's threads keep the daemon's nice value.
    _, main_nice, _ = after[pid]
    assert main_nice == BASE_NICE, report
    front_end = [t for t, (name, _, _) in after.items() if name.startswith(FRONT_END_PREFIXES)]
    assert front_end and all(after[t][1] == BASE_NICE for t in front_end), report
