"""The shared batch scheduler, the parameter registry and the submitter with a pure-numpy
fake servable."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from servingd.batching.metrics import BATCHING_QUEUING_LATENCY
from servingd.batching.parameters import BatchingParameters
from servingd.batching.registry import FROM_VERSION, BatchingParameterRegistry
from servingd.batching.run_times import SHORT_BATCH_RUN_S, BatchRunTimes
from servingd.batching.scheduler import SharedBatchScheduler
from servingd.batching.submitter import BatchSubmitter
from servingd.batching.version_parameters import read_version_parameters
from servingd.config.errors import ConfigError
from servingd.core.errors import DeadlineExceeded, InvalidArgument, Unavailable
from servingd.core.ids import ServableId
from servingd.core.metrics import REGISTRY

WAIT = 10.0


@dataclass
class FakeSignature:
    """x -> y = x * 2 (+ 'row_sum' = sum over the non-batch dims)."""

    name: str = "serving_default"
    inputs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"x": None}))
    outputs: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({"row_sum": None, "y": None})
    )

    def validate_inputs(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if set(inputs) != {"x"}:
            raise InvalidArgument("expected exactly x")
        return [np.asarray(inputs["x"])]

    def validate_output_filter(self, output_filter: Sequence[str]) -> tuple[str, ...]:
        return tuple(output_filter) or tuple(self.outputs)


class StepClock:
    """Monotonic seconds that move only when a fake run says it took time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class BatchingSession(BatchingParameterRegistry):
    """The registry, with the submitter that the daemon pairs with it."""

    def __init__(self, scheduler: SharedBatchScheduler) -> None:
        super().__init__(scheduler)
        self.submitter = BatchSubmitter(scheduler)


def timed_by(session: BatchingSession, *servables: FakeServable) -> None:
    """The session measures batched runs with a clock that only these servables move."""
    clock = StepClock()
    session.submitter.run_times = BatchRunTimes(clock)
    for servable in servables:
        servable.clock = clock


class FakeServable:
    """Records every batch it runs; can be held closed with `gate`."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fetched: list[tuple[str, ...]] = []
        self.in_caller_thread: list[bool] = []
        self.run_seconds = 0.0
        # With a clock, a run advances it by run_seconds instead of sleeping: the run takes
        # exactly that long whatever else the machine does.
        self.clock: StepClock | None = None

    def run(
        self,
        signature: Any,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        in_caller_thread: bool = False,
    ) -> dict[str, np.ndarray]:
        self.entered.set()
        assert self.gate.wait(WAIT)
        self.in_caller_thread.append(in_caller_thread)
        if self.clock is None:
            time.sleep(self.run_seconds)
        else:
            self.clock.now += self.run_seconds
        x = inputs["x"]
        self.batches.append(x.copy())
        self.fetched.append(tuple(output_filter))
        out = self.outputs(x)
        return {a: out[a] for a in output_filter}

    def outputs(self, x: np.ndarray) -> dict[str, Any]:
        return {"y": x * 2, "row_sum": x.reshape(len(x), -1).sum(axis=1)}


@pytest.fixture
def session() -> Iterator[BatchingSession]:
    s = BatchingSession(SharedBatchScheduler(1))
    yield s
    s.scheduler.stop(5.0)


SID = ServableId("m", 1)


def submit(
    session: BatchingSession,
    servable: FakeServable,
    x: np.ndarray,
    params: BatchingParameters,
    *,
    output_filter: Sequence[str] = ("y",),
    timeout: float | None = None,
    sid: ServableId = SID,
) -> concurrent.futures.Future[dict[str, np.ndarray]]:
    return session.submitter.submit(
        sid, servable, FakeSignature(), {"x": x}, output_filter, params, timeout
    )


def rows(start: int, n: int, width: int = 3) -> np.ndarray:
    return np.arange(start * width, (start + n) * width, dtype=np.float32).reshape(n, width)


def test_concurrent_tasks_of_mixed_sizes_each_get_their_own_rows(
    session: BatchingSession,
) -> None:
    servable = FakeServable()
    servable.gate.clear()  # hold the first batch so the others pile up and merge
    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=1)
    sizes = [1, 3, 2, 5, 1, 4, 8, 2, 1, 7, 3, 3]
    inputs = []
    start = 0
    for n in sizes:
        inputs.append(rows(start, n))
        start += n
    futures = [submit(session, servable, x, params, output_filter=("y", "row_sum")) for x in inputs]
    servable.gate.set()
    for x, fut in zip(inputs, futures, strict=True):
        out = fut.result(WAIT)
        np.testing.assert_array_equal(out["y"], x * 2)
        np.testing.assert_array_equal(out["row_sum"], x.sum(axis=1))
    assert all(len(b) <= 8 for b in servable.batches)
    assert len(servable.batches) < len(sizes)  # tasks were merged
    assert sum(len(b) for b in servable.batches) == sum(sizes)


def test_allowed_batch_sizes_pad_and_strip(session: BatchingSession) -> None:
    servable = FakeServable()
    servable.gate.clear()
    params = BatchingParameters(
        max_batch_size=8, batch_timeout_micros=0, allowed_batch_sizes=(4, 8), num_batch_threads=1
    )
    blocker = submit(session, servable, rows(100, 1), params)
    assert servable.entered.wait(WAIT)
    a = submit(session, servable, rows(0, 2), params)
    b = submit(session, servable, rows(2, 3), params)
    servable.gate.set()
    blocker.result(WAIT)
    np.testing.assert_array_equal(a.result(WAIT)["y"], rows(0, 2) * 2)
    np.testing.assert_array_equal(b.result(WAIT)["y"], rows(2, 3) * 2)
    assert [len(x) for x in servable.batches] == [4, 8]
    # padding repeats the last task's first row
    np.testing.assert_array_equal(servable.batches[1][5:], np.repeat(rows(2, 1), 3, axis=0))


def test_large_task_is_split_and_reassembled(session: BatchingSession) -> None:
    servable = FakeServable()
    params = BatchingParameters(
        max_batch_size=20,
        enable_large_batch_splitting=True,
        max_execution_batch_size=4,
        allowed_batch_sizes=(2, 4),
        num_batch_threads=1,
    )
    x = rows(0, 11)
    out = submit(session, servable, x, params).result(WAIT)
    np.testing.assert_array_equal(out["y"], x * 2)
    assert [len(b) for b in servable.batches] == [4, 4, 4]  # 4 + 4 + 3 padded to 4


def queuing_latency(model: str) -> tuple[float, float]:
    """(count, sum in microseconds) of TF Serving's queuing_latency for `model`."""
    labels = {"thread_pool_name": BatchingParameters().thread_pool_name, "model_name": model}
    name = BATCHING_QUEUING_LATENCY._name
    count = REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0
    total = REGISTRY.get_sample_value(f"{name}_sum", labels) or 0.0
    return count, total


def test_queuing_latency_is_observed_once_per_task_with_its_wait(
    session: BatchingSession,
) -> None:
    sid = ServableId("queuing_latency_model", 1)
    servable = FakeServable()
    servable.gate.clear()
    params = BatchingParameters(
        max_batch_size=20,
        enable_large_batch_splitting=True,
        max_execution_batch_size=4,
        batch_timeout_micros=0,
        num_batch_threads=1,
    )
    before = queuing_latency(sid.name)
    running = submit(session, servable, rows(0, 1), params, sid=sid)
    assert servable.entered.wait(WAIT)
    queued = submit(session, servable, rows(1, 11), params, sid=sid)  # 3 pieces
    time.sleep(0.2)  # it waits behind the held batch
    servable.gate.set()
    running.result(WAIT)
    np.testing.assert_array_equal(queued.result(WAIT)["y"], rows(1, 11) * 2)
    count, total = (a - b for a, b in zip(queuing_latency(sid.name), before, strict=True))
    assert count == 2  # one per task, not per piece
    assert 0.2e6 <= total < WAIT * 1e6


def test_task_larger_than_max_batch_size_is_refused(session: BatchingSession) -> None:
    params = BatchingParameters(max_batch_size=4)
    with pytest.raises(InvalidArgument, match="Task size 5 is larger than maximum input batch"):
        submit(session, FakeServable(), rows(0, 5), params)


def test_full_queue_refuses_unavailable_at_once(session: BatchingSession) -> None:
    servable = FakeServable()
    servable.gate.clear()
    params = BatchingParameters(
        max_batch_size=2, max_enqueued_batches=1, batch_timeout_micros=0, num_batch_threads=1
    )
    running = submit(session, servable, rows(0, 2), params)
    assert servable.entered.wait(WAIT)  # taken by the batch thread: no longer queued
    queued = submit(session, servable, rows(2, 2), params)
    with pytest.raises(Unavailable, match=r"batch scheduling queue .* is full"):
        submit(session, servable, rows(4, 1), params)
    servable.gate.set()
    running.result(WAIT)
    np.testing.assert_array_equal(queued.result(WAIT)["y"], rows(2, 2) * 2)


def test_cancelled_task_leaves_queue_and_never_runs(session: BatchingSession) -> None:
    servable = FakeServable()
    servable.gate.clear()
    params = BatchingParameters(
        max_batch_size=2, max_enqueued_batches=1, batch_timeout_micros=0, num_batch_threads=1
    )
    running = submit(session, servable, rows(0, 1), params)
    assert servable.entered.wait(WAIT)
    gone = submit(session, servable, rows(50, 2), params)
    assert session.scheduler.num_enqueued_tasks(("m", 1, "serving_default")) == 1
    assert gone.cancel()
    assert session.scheduler.num_enqueued_tasks(("m", 1, "serving_default")) == 0
    after = submit(session, servable, rows(1, 2), params)  # the room it held is free again
    servable.gate.set()
    running.result(WAIT)
    after.result(WAIT)
    assert not any((b == rows(50, 1)).all(axis=1).any() for b in servable.batches)


def test_expired_task_fails_deadline_exceeded_without_running(session: BatchingSession) -> None:
    servable = FakeServable()
    servable.gate.clear()
    params = BatchingParameters(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    running = submit(session, servable, rows(0, 1), params)
    assert servable.entered.wait(WAIT)
    late = submit(session, servable, rows(50, 1), params, timeout=0.01)
    threading.Event().wait(0.05)  # its deadline passes while the thread is busy
    servable.gate.set()
    running.result(WAIT)
    with pytest.raises(DeadlineExceeded):
        late.result(WAIT)
    assert len(servable.batches) == 1


def test_different_shapes_go_to_different_batches(session: BatchingSession) -> None:
    servable = FakeServable()
    servable.gate.clear()
    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1)
    blocker = submit(session, servable, rows(0, 1), params)
    assert servable.entered.wait(WAIT)
    narrow = [submit(session, servable, rows(i, 1, width=3), params) for i in range(3)]
    wide = [submit(session, servable, rows(i, 1, width=5), params) for i in range(2)]
    servable.gate.set()
    blocker.result(WAIT)
    for i, f in enumerate(narrow):
        np.testing.assert_array_equal(f.result(WAIT)["y"], rows(i, 1, 3) * 2)
    for i, f in enumerate(wide):
        np.testing.assert_array_equal(f.result(WAIT)["y"], rows(i, 1, 5) * 2)
    assert sorted(b.shape for b in servable.batches[1:]) == [(2, 5), (3, 3)]


def test_variable_length_inputs_are_padded_when_enabled(session: BatchingSession) -> None:
    servable = FakeServable()
    servable.gate.clear()
    params = BatchingParameters(
        max_batch_size=8,
        batch_timeout_micros=0,
        pad_variable_length_inputs=True,
        num_batch_threads=1,
    )
    blocker = submit(session, servable, rows(0, 1), params)
    assert servable.entered.wait(WAIT)
    short = submit(session, servable, np.array([[7, 8]], np.float32), params)
    long = submit(session, servable, np.array([[1, 2, 3, 4]], np.float32), params)
    servable.gate.set()
    blocker.result(WAIT)
    # padded with each tensor's first element, as TF Serving does
    np.testing.assert_array_equal(short.result(WAIT)["y"], [[14, 16, 14, 14]])
    np.testing.assert_array_equal(long.result(WAIT)["y"], [[2, 4, 6, 8]])
    assert servable.batches[1].shape == (2, 4)


def test_output_without_batch_dimension_fails_like_tf_serving(session: BatchingSession) -> None:
    class ScalarOut(FakeServable):
        def outputs(self, x: np.ndarray) -> dict[str, Any]:
            return {"y": np.float32(1.0)}

    params = BatchingParameters(max_batch_size=4, num_batch_threads=1)
    fut = submit(session, ScalarOut(), rows(0, 2), params)
    with pytest.raises(Exception, match="Batched output tensor has 0 dimensions"):
        fut.result(WAIT)


def test_round_robin_across_queues(session: BatchingSession) -> None:
    servable = FakeServable()
    servable.gate.clear()
    params = BatchingParameters(max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1)
    blocker = submit(session, servable, rows(0, 1), params, sid=ServableId("a", 1))
    assert servable.entered.wait(WAIT)
    a = [
        submit(session, servable, rows(10 + i, 1), params, sid=ServableId("a", 1)) for i in range(3)
    ]
    b = [
        submit(session, servable, rows(20 + i, 1), params, sid=ServableId("b", 1)) for i in range(3)
    ]
    servable.gate.set()
    for f in [blocker, *a, *b]:
        f.result(WAIT)
    firsts = [int(batch[0, 0]) // 3 for batch in servable.batches[1:]]
    assert firsts == [20, 10, 21, 11, 22, 12] or firsts == [10, 20, 11, 21, 12, 22]


def test_new_parameters_apply_to_the_next_batch(session: BatchingSession) -> None:
    servable = FakeServable()
    small = BatchingParameters(max_batch_size=2, num_batch_threads=1)
    with pytest.raises(InvalidArgument):
        submit(session, servable, rows(0, 3), small)
    session.set_parameters({"m": BatchingParameters(max_batch_size=4, num_batch_threads=2)})
    bigger = session.parameters_for(ServableId("m", 1))
    assert bigger is not None
    np.testing.assert_array_equal(
        submit(session, servable, rows(0, 3), bigger).result(WAIT)["y"], rows(0, 3) * 2
    )
    assert session.scheduler.num_threads == 2
    session.set_parameters({})
    assert session.parameters_for(ServableId("m", 1)) is None


def test_short_batched_runs_execute_tensorflow_in_the_batch_thread(
    session: BatchingSession,
) -> None:
    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1)
    servable = FakeServable()
    reloaded = FakeServable()  # another version object: a record of its own
    timed_by(session, servable, reloaded)
    for i in range(3):
        submit(session, servable, rows(i, 1), params).result(WAIT)
    # the first run has no record yet: TensorFlow's threads; then it is known to be short
    assert servable.in_caller_thread == [False, True, True]
    submit(session, reloaded, rows(0, 1), params).result(WAIT)
    assert reloaded.in_caller_thread == [False]


def test_long_batched_runs_keep_tensorflow_threads(session: BatchingSession) -> None:
    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1)
    slow = FakeServable()
    medium = FakeServable()
    timed_by(session, slow, medium)
    slow.run_seconds = 5 * SHORT_BATCH_RUN_S
    for i in range(3):
        submit(session, slow, rows(i, 1), params).result(WAIT)
    assert slow.in_caller_thread == [False, False, False]
    # The estimate scales with the padded rows: 1 row in 3/4 of the limit is short for one
    # row, not for two.
    medium.run_seconds = 0.75 * SHORT_BATCH_RUN_S
    submit(session, medium, rows(0, 1), params).result(WAIT)
    submit(session, medium, rows(1, 2), params).result(WAIT)
    assert medium.in_caller_thread == [False, False]


def test_bad_request_fails_alone_before_queueing(session: BatchingSession) -> None:
    params = BatchingParameters(max_batch_size=4)
    with pytest.raises(InvalidArgument, match=r"at least one dimension"):
        submit(session, FakeServable(), np.float32(3.0), params)  # type: ignore[arg-type]


def test_models_batched_by_their_version_files(session: BatchingSession) -> None:
    pool = BatchingParameters(max_batch_size=8, num_batch_threads=3, thread_pool_name="pool")
    session.set_parameters({"m": FROM_VERSION, "other": pool}, pool=pool)
    assert session.scheduler.num_threads == 3
    v1, v2 = ServableId("m", 1), ServableId("m", 2)
    assert session.parameters_for(v1) is None  # no file (yet): not batched
    shipped = BatchingParameters(max_batch_size=4, num_batch_threads=9, thread_pool_name="x")
    session.set_version_parameters(v1, shipped)
    assert session.parameters_for(v1) == BatchingParameters(
        max_batch_size=4, num_batch_threads=3, thread_pool_name="pool"
    )
    assert session.parameters_for(v2) is None  # each version its own
    session.set_version_parameters(v1, None)  # unloaded
    assert session.parameters_for(v1) is None


def test_version_file_is_read_from_the_version_directory(tmp_path: Path) -> None:
    assert read_version_parameters(str(tmp_path)) is None
    (tmp_path / "batching_params.pbtxt").write_text("max_batch_size { value: 16 }\n")
    params = read_version_parameters(str(tmp_path))
    assert params is not None and params.max_batch_size == 16
    (tmp_path / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 16 }\nallowed_batch_sizes: 8\n"
    )
    with pytest.raises(ConfigError) as info:
        read_version_parameters(str(tmp_path))
    assert "batching_params.pbtxt" in str(info.value)
