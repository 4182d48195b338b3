"""A cancelled or expired run stops computing (the default SavedModel runtime,
servables/saved_model_functions.py): in process, and through a daemon over gRPC and REST.

No verdict here depends on the machine's speed: the runs cancelled are never-ending spins
(days of CPU), so a run that was not stopped never ends, and its Future's deadline is long;
the daemon tests measure the CPU the daemon spends after the cancels, which a busy machine
can only lower."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2, prediction_service_pb2_grpc
from tests.bench import procs

from servingd.core import errors
from servingd.core.ids import ServableId
from servingd.servables.saved_model import SavedModelLoader
from servingd.servables.warmup import WarmupOptions
from servingd.tools.export_models import export_mlp
from servingd.tools.reference_models import write_warmup_requests
from support.servingd_process import ServingdProcess
from support.spin_model import export_spin, rest_spins, spin_request

FOREVER = 10**12  # spins: days of CPU
STOPPED_WITHIN_S = 60.0  # a stopped spin ends at its next iteration; a running one, never


@pytest.fixture(scope="module")
def spin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("spin")
    export_spin(base / "1")
    return base


@pytest.fixture
def spin(spin_dir: Path) -> Iterator[Any]:
    loader = SavedModelLoader(ServableId("spin", 1), str(spin_dir / "1"))
    loader.load()
    try:
        yield loader.servable()
    finally:
        loader.unload()


class _SpinCall:
    """A Call (servables.servable) that spins `n` times."""

    def __init__(self, n: int) -> None:
        self.n = n

    def batch_input(self, servable: Any) -> None:
        return None

    def run(self, servable: Any, timeout_s: float | None) -> Any:
        signature = servable.signature()
        return servable.run(signature, {"n": np.array(self.n, np.int64)}, timeout_s=timeout_s)

    def finish(self, outputs: Any) -> Any:
        raise AssertionError("never batched")


def test_the_function_runtime_answers(spin: Any) -> None:
    assert type(spin).__name__ == "FunctionSavedModelServable"
    assert spin.run(spin.signature(), {"n": np.array(1000, np.int64)})["y"] == 1000


def test_a_running_call_stops_when_its_future_is_cancelled(spin: Any) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as workers:
        future = spin.start(_SpinCall(FOREVER), None, workers)
        _wait_until(future.running)
        assert future.cancel() is False  # running: the run is stopped, the Future fails
        with pytest.raises(errors.Cancelled):
            future.result(timeout=STOPPED_WITHIN_S)


def test_a_queued_call_is_cancelled_before_it_runs(spin: Any) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as workers:
        blocker = spin.start(_SpinCall(FOREVER), None, workers)
        queued = spin.start(_SpinCall(1), None, workers)
        assert queued.cancel() is True and queued.cancelled()
        blocker.cancel()
        with pytest.raises(errors.Cancelled):
            blocker.result(timeout=STOPPED_WITHIN_S)


def test_a_deadline_stops_the_run(spin: Any) -> None:
    with pytest.raises(errors.DeadlineExceeded, match="was stopped"):
        spin.run(spin.signature(), {"n": np.array(FOREVER, np.int64)}, timeout_s=0.3)


def test_runs_within_their_deadline_answer(spin: Any) -> None:
    signature = spin.signature()
    for n in (0, 1, 1000):
        assert int(spin.run(signature, {"n": np.array(n, np.int64)}, timeout_s=60)["y"]) == n


def _wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _cpu_over(pid: int, seconds: float) -> float:
    """The CPU seconds `pid` spends over the next `seconds`."""
    before = procs.cpu_seconds(pid)
    time.sleep(seconds)
    return procs.cpu_seconds(pid) - before


def test_eight_cancelled_grpc_predicts_cost_under_a_second_of_cpu(spin_dir: Path) -> None:
    """Issue 28's done-when: 8 slow Predicts (no deadline) cancelled by the client after
    0.3 s; the daemon's CPU over the next 3 s stays under 1 s (a Session burns both cores)."""
    args = ["--model_name=spin", f"--model_base_path={spin_dir}"]
    with ServingdProcess(args) as server:
        server.wait_healthy()
        assert server.proc is not None
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        stub.Predict(spin_request(10), timeout=60)
        calls = [stub.Predict.future(spin_request(FOREVER)) for _ in range(8)]
        pid = server.proc.pid
        _wait_until(lambda: _cpu_over(pid, 0.5) > 0.2)  # the spins run
        for call in calls:
            call.cancel()
        _wait_until(lambda: _cpu_over(pid, 0.5) < 0.1)  # never, were the runs going on
        spent = _cpu_over(pid, 3.0)
        assert spent < 1.0, f"{spent:.2f} s of CPU after the cancels: the runs go on"
        reply = stub.Predict(spin_request(1000), timeout=60)  # the model answers again
        assert reply.outputs["y"].int64_val == [1000]
        for call in calls:
            with pytest.raises(grpc.FutureCancelledError):
                call.result()


class _Counter(tf.Module):
    """A TF2 counter (a resource variable): state a function runtime must keep."""

    def __init__(self) -> None:
        super().__init__()
        self.count = tf.Variable(0.0)

    @tf.function(input_signature=[])
    def incr(self) -> dict[str, tf.Tensor]:
        return {"output": self.count.assign_add(1.0)}

    @tf.function(input_signature=[])
    def get(self) -> dict[str, tf.Tensor]:
        return {"output": tf.identity(self.count)}


def test_warmup_runs_through_the_function_runtime(tmp_path: Path) -> None:
    module = _Counter()
    version_dir = tmp_path / "counter2" / "1"
    tf.saved_model.save(
        module, str(version_dir), signatures={"incr": module.incr, "get": module.get}
    )
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.signature_name = "incr"
    write_warmup_requests(version_dir, [log.SerializeToString()] * 3)
    loader = SavedModelLoader(ServableId("counter2", 1), str(version_dir), warmup=WarmupOptions())
    loader.load()
    try:
        servable = loader.servable()
        assert type(servable).__name__ == "FunctionSavedModelServable"
        assert float(servable.run(servable.signature("get"), {})["output"]) == 3.0
        assert float(servable.run(servable.signature("incr"), {})["output"]) == 4.0
    finally:
        loader.unload()


def test_eight_rest_predicts_whose_clients_hang_up_cost_under_a_second_of_cpu(
    spin_dir: Path,
) -> None:
    # The REST timeout, longer than the test waits: only the hang-up can stop the runs.
    args = [
        "--model_name=spin",
        f"--model_base_path={spin_dir}",
        "--rest_api_timeout_in_ms=600000",
    ]
    with ServingdProcess(args) as server:
        server.wait_healthy()
        assert server.proc is not None
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        stub.Predict(spin_request(10), timeout=60)
        hang_up = rest_spins(server.rest_port, 8)
        pid = server.proc.pid
        _wait_until(lambda: _cpu_over(pid, 0.5) > 0.2)  # the spins run
        hang_up()
        _wait_until(lambda: _cpu_over(pid, 0.5) < 0.1)  # never, were the runs going on
        spent = _cpu_over(pid, 3.0)
        assert spent < 1.0, f"{spent:.2f} s of CPU after the hang-ups: the runs go on"


def test_unloading_one_version_leaves_another_of_the_same_export_serving(tmp_path: Path) -> None:
    """close() destroys the version's resources by their (per-load) shared names only."""
    version_dir = tmp_path / "mlp" / "1"
    export_mlp(version_dir)
    loaders = [SavedModelLoader(ServableId("mlp", v), str(version_dir)) for v in (1, 2)]
    for loader in loaders:
        loader.load()
    x = {"x": np.ones((2, 784), np.float32)}
    first = loaders[0].servable()
    expected = first.run(first.signature(), x)["probabilities"]
    loaders[0].unload()
    second = loaders[1].servable()
    np.testing.assert_allclose(second.run(second.signature(), x)["probabilities"], expected)
    loaders[1].unload()


def test_a_batch_whose_every_client_cancelled_stops_and_one_still_wanted_runs_on(
    tmp_path: Path,
) -> None:
    """Batched: a running batch serves every task in it, so one cancelled task leaves it
    running; once all its tasks are cancelled, it stops. Two never-ending batched Predicts
    (one batch), the first cancelled: the run goes on; the second cancelled: it stops."""
    etc = tmp_path / "etc"
    spin = export_spin(etc / "spin" / "1", batched=True).parent
    (etc / "models.d").mkdir()
    (etc / "models.d/spin.yaml").write_text(
        f"base_path: {spin}\nbatching: {{max_batch_size: 8, batch_timeout_micros: 500000}}\n"
    )
    (etc / "servingd.yaml").write_text(
        "models_dir: models.d\n"
        "file_system_poll_wait_seconds: 0\n"
        "version_settle_seconds: 0\n"
        "logging: {level: info, target: stderr}\n"
    )
    with ServingdProcess([f"--config={etc / 'servingd.yaml'}"]) as server:
        server.wait_healthy()
        assert server.proc is not None
        pid = server.proc.pid
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        stub.Predict(spin_request(10, batched=True), timeout=60)
        # Within the 0.5 s batch timeout of each other: one batch of two tasks.
        calls = [stub.Predict.future(spin_request(FOREVER, batched=True)) for _ in range(2)]
        _wait_until(lambda: _cpu_over(pid, 0.5) > 0.2)  # the batch runs
        calls[0].cancel()
        # A stopped batch would leave the daemon idle (~0 s); a running one spins a core.
        assert _cpu_over(pid, 2.0) > 0.1, "the batch stopped though one client still waits"
        calls[1].cancel()
        _wait_until(lambda: _cpu_over(pid, 0.5) < 0.1)  # never, were the batch going on
        reply = stub.Predict(spin_request(1000, batched=True), timeout=60)
        assert list(reply.outputs["y"].int64_val) == [1000]
