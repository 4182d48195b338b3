"""SharedBatchScheduler: one per process, one queue per (model, version, signature).

The contract (TF Serving's shared_batch_scheduler.h, with servingd's additions):

- `schedule(key, task, params, processor)` puts a task (a request of `task.size` rows)
  on the queue named `key` and returns its Future at once. A task larger than
  `params.max_batch_size` is refused INVALID_ARGUMENT; a queue that already holds
  `max_enqueued_batches` batches' worth of rows refuses it UNAVAILABLE (TF's "queue is
  full"), so callers fail fast instead of piling up.
- A pool of batch threads round-robins over the non-empty queues. A queue's batch closes
  when it holds `execution_batch_size` rows or when its oldest task has waited
  `batch_timeout_micros`; then a free thread takes up to that many rows and calls the
  queue's `processor(batch)`, which returns one output mapping per slice of the batch.
- Only tasks with equal `shape_key` share a batch (the head task's group goes first;
  others wait for the next batch), so requests whose non-batch shapes differ never make
  each other fail.
- With `enable_large_batch_splitting`, a task that does not fit the room left in a batch
  is split: its first rows fill this batch, the rest stay at the head of the queue, and
  the Future gets the pieces concatenated in order once all have run.
- A task whose Future is cancelled (the client went away or its deadline passed) leaves
  its queue at once; one whose `deadline` passed while queued fails DEADLINE_EXCEEDED
  when a batch is formed. No batch runs rows for a task that is already done.
- Parameters are read at every decision from the latest `schedule` call of that queue,
  so new settings (a reload) apply to the next batch without a restart.
- A Future moves to RUNNING when its first rows are taken into a batch; from then on
  cancelling it cancels its token (core.cancellation), and it completes after the batch
  (or its last piece) has run. The batch processor stops a batch whose every task's token
  is cancelled (batching.batch_processor).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servingd.batching import metrics
from servingd.batching.parameters import BatchingParameters
from servingd.core.cancellation import CancellableFuture
from servingd.core.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ServingError,
    Unavailable,
)
from servingd.core.metrics import labelled
from servingd.core.thread_priority import lower_current_thread

log = logging.getLogger(__name__)

QueueKey = tuple[str, int, str]  # model name, version, signature name
Outputs = dict[str, np.ndarray]


class BatchTask:
    """One request: `size` rows of `inputs` (alias -> array, rows along dimension 0).

    `shape_key` says which tasks may share a batch; `output_aliases` what this caller
    gets back; `deadline` is on `time.monotonic()`'s clock (None: no deadline); `finish`
    turns the task's outputs into its Future's value, on the batch thread once the last
    piece has run (None: the outputs themselves).
    """

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        size: int,
        *,
        shape_key: Hashable = None,
        output_aliases: Sequence[str] = (),
        deadline: float | None = None,
        finish: Callable[[Outputs], Any] | None = None,
    ) -> None:
        self.inputs = inputs
        self.size = size
        self.shape_key = shape_key
        self.output_aliases = tuple(output_aliases)
        self.deadline = deadline
        self.finish = finish
        self.future: CancellableFuture[Any] = CancellableFuture()
        self.enqueue_time = 0.0
        # Scheduler state, guarded by the scheduler's lock.
        self.next_row = 0  # rows [0, next_row) are in batches already
        self.queued = False
        # Pieces that ran, guarded by _pieces_lock (pieces may finish on different threads).
        self._pieces: list[tuple[int, Outputs]] = []
        self._rows_done = 0
        self._pieces_lock = threading.Lock()

    def piece_done(
        self, start: int, rows: int, outputs: Outputs | None, error: BaseException | None
    ) -> None:
        """Records rows [start, start + rows) of this task; completes the Future when whole."""
        with self._pieces_lock:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
                return
            assert outputs is not None
            self._pieces.append((start, outputs))
            self._rows_done += rows
            if self._rows_done < self.size:
                return
            pieces = sorted(self._pieces, key=lambda p: p[0])
            self._pieces = []
        if len(pieces) == 1:
            result = pieces[0][1]
        else:
            result = {
                alias: np.concatenate([p[1][alias] for p in pieces], axis=0)
                for alias in pieces[0][1]
            }
        if self.finish is None:
            self.future.set_result(result)
            return
        try:
            value = self.finish(result)
        except BaseException as exc:
            self.future.set_exception(exc)
            return
        self.future.set_result(value)


@dataclass(frozen=True, slots=True)
class BatchSlice:
    """Rows [start, stop) of one task."""

    task: BatchTask
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def input(self, alias: str) -> np.ndarray:
        array = self.task.inputs[alias]
        if self.start == 0 and self.stop == self.task.size:
            return array
        return array[self.start : self.stop]


@dataclass(frozen=True, slots=True)
class Batch:
    key: QueueKey
    slices: tuple[BatchSlice, ...]
    params: BatchingParameters
    formed_at: float  # on the scheduler's clock

    @property
    def size(self) -> int:
        return sum(s.size for s in self.slices)


# Given a batch, returns one output mapping per slice (in order), or raises.
Processor = Callable[[Batch], Sequence[Outputs]]


class _Queue:
    __slots__ = ("key", "params", "processor", "rows", "tasks")

    def __init__(self, key: QueueKey, params: BatchingParameters, processor: Processor) -> None:
        self.key = key
        self.params = params
        self.processor = processor
        self.tasks: deque[BatchTask] = deque()
        self.rows = 0  # rows not yet taken into a batch


class SharedBatchScheduler:
    """The process-wide batch scheduler (see the module docstring for the contract)."""

    def __init__(
        self,
        num_batch_threads: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        thread_name_prefix: str = "servingd-batch",
        thread_nice: int = 0,
    ) -> None:
        """`thread_nice`: the batch threads' nice value (servingd.core.thread_priority)."""
        self._clock = clock
        self._thread_nice = thread_nice
        self._prefix = thread_name_prefix
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queues: dict[QueueKey, _Queue] = {}
        self._rr = 0
        self._target_threads = 0
        self._live: dict[int, threading.Thread] = {}
        self._stopping = False
        self.set_num_threads(num_batch_threads)

    # -- configuration ----------------------------------------------------------------
    @property
    def num_threads(self) -> int:
        with self._lock:
            return self._target_threads

    def set_num_threads(self, n: int) -> None:
        """Grows or shrinks the batch thread pool (surplus threads exit when idle)."""
        if n < 1:
            raise ValueError(f"num_batch_threads must be >= 1, got {n}")
        with self._lock:
            if self._stopping:
                return
            self._target_threads = n
            for index in range(n):
                if index not in self._live:
                    thread = threading.Thread(
                        target=self._work,
                        args=(index,),
                        name=f"{self._prefix}-{index}",
                        daemon=True,
                    )
                    self._live[index] = thread
                    thread.start()
            self._cond.notify_all()

    # -- scheduling -------------------------------------------------------------------
    def schedule(
        self,
        key: QueueKey,
        task: BatchTask,
        params: BatchingParameters,
        processor: Processor,
    ) -> concurrent.futures.Future[Any]:
        """Enqueues `task`; returns its Future. Raises InvalidArgument / Unavailable."""
        if task.size > params.max_task_size:
            raise InvalidArgument(
                f"Task size {task.size} is larger than maximum input batch size "
                f"{params.max_task_size}"
            )
        if task.size < 1:
            raise InvalidArgument("Batching Run() input tensors must have a 0th dimension > 0")
        with self._lock:
            if self._stopping:
                raise Unavailable("The batch scheduler is shutting down")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(key, params, processor)
            else:
                queue.params = params
                queue.processor = processor
            limit = params.max_enqueued_batches * params.execution_batch_size
            if queue.rows + task.size > limit:
                if not queue.tasks:
                    del self._queues[key]
                raise Unavailable(
                    "The batch scheduling queue to which this task was submitted is full"
                )
            task.enqueue_time = self._clock()
            task.queued = True
            was_empty = not queue.tasks
            queue.tasks.append(task)
            queue.rows += task.size
            # A thread must look again only when this queue just became non-empty (its
            # batch timeout starts) or full; otherwise whoever saw it already waits on its
            # timeout or is running a batch and will pick it next. Waking a batch thread
            # per request would form batches of one on a busy machine.
            if was_empty or queue.rows >= params.execution_batch_size:
                self._cond.notify()
        labelled(metrics.BATCHING_INPUT_BATCH_SIZE, key[0]).observe(task.size)
        task.future.add_done_callback(lambda _f: self._forget(key, task))
        return task.future

    def num_enqueued_tasks(self, key: QueueKey) -> int:
        with self._lock:
            queue = self._queues.get(key)
            return 0 if queue is None else len(queue.tasks)

    def _forget(self, key: QueueKey, task: BatchTask) -> None:
        """A task's Future is done (cancelled, failed or answered): it leaves its queue."""
        # `queued` only ever goes from True to False (under the lock) once the task is
        # enqueued, so False read without the lock is final: the common case (the task
        # ran) costs no lock round trip on the batch thread.
        if not task.queued:
            return
        with self._lock:
            if not task.queued:
                return
            queue = self._queues.get(key)
            if queue is not None:
                self._remove(queue, task)

    def _remove(self, queue: _Queue, task: BatchTask) -> None:
        task.queued = False
        try:
            queue.tasks.remove(task)
        except ValueError:
            return
        queue.rows -= task.size - task.next_row
        if not queue.tasks:
            self._queues.pop(queue.key, None)

    # -- batch threads ----------------------------------------------------------------
    def _work(self, index: int) -> None:
        lower_current_thread(self._thread_nice)
        while True:
            with self._lock:
                while True:
                    if index >= self._target_threads or (self._stopping and not self._queues):
                        del self._live[index]
                        self._cond.notify_all()
                        return
                    picked, wait, failed = self._pick()
                    if picked is not None or failed:
                        break
                    self._cond.wait(wait)
            _fail_expired(failed)
            if picked is not None:
                _observe_queuing(picked[0])
                self._run(*picked)

    def _pick(
        self,
    ) -> tuple[tuple[Batch, Processor] | None, float | None, list[BatchTask]]:
        """Under the lock: the next ready batch (round robin), else how long to wait."""
        now = self._clock()
        keys = list(self._queues)
        wait: float | None = None
        failed: list[BatchTask] = []
        n = len(keys)
        for i in range(n):
            position = (self._rr + i) % n
            queue = self._queues.get(keys[position])
            if queue is None:
                continue
            timeout = queue.params.batch_timeout_micros / 1e6
            oldest = queue.tasks[0].enqueue_time
            ready = (
                self._stopping
                or queue.rows >= queue.params.execution_batch_size
                or now - oldest >= timeout
            )
            if not ready:
                remaining = oldest + timeout - now
                wait = remaining if wait is None else min(wait, remaining)
                continue
            batch = self._form(queue, now, failed)
            if batch is None:
                continue  # everything it held was cancelled or expired
            self._rr = position + 1
            return (batch, queue.processor), None, failed
        return None, wait, failed

    def _form(self, queue: _Queue, now: float, failed: list[BatchTask]) -> Batch | None:
        params = queue.params
        room = params.execution_batch_size
        slices: list[BatchSlice] = []
        for task in list(queue.tasks):
            if room <= 0:
                break
            if task.future.done():  # cancelled, or failed in an earlier piece
                self._remove(queue, task)
                continue
            if slices and task.shape_key != slices[0].task.shape_key:
                continue  # another shape: it waits for a batch of its own
            remaining = task.size - task.next_row
            if remaining > room and not params.enable_large_batch_splitting:
                break  # keep arrival order: it opens the next batch
            if task.next_row == 0:
                if task.deadline is not None and task.deadline <= now:
                    self._remove(queue, task)
                    failed.append(task)
                    continue
                if not task.future.set_running_or_notify_cancel():
                    self._remove(queue, task)
                    continue
            take = min(remaining, room)
            slices.append(BatchSlice(task, task.next_row, task.next_row + take))
            task.next_row += take
            queue.rows -= take
            room -= take
            if task.next_row == task.size:
                task.queued = False
                queue.tasks.remove(task)
        if not queue.tasks:
            self._queues.pop(queue.key, None)
        if not slices:
            return None
        return Batch(queue.key, tuple(slices), params, now)

    def _run(self, batch: Batch, processor: Processor) -> None:
        try:
            outputs = processor(batch)
            if len(outputs) != len(batch.slices):
                raise Internal(
                    f"batch processor returned {len(outputs)} results for {len(batch.slices)} tasks"
                )
        except BaseException as exc:
            error = exc if isinstance(exc, ServingError) else _internal(exc)
            for piece in batch.slices:
                piece.task.piece_done(piece.start, piece.size, None, error)
            return
        for piece, result in zip(batch.slices, outputs, strict=True):
            piece.task.piece_done(piece.start, piece.size, result, None)

    # -- shutdown ---------------------------------------------------------------------
    def stop(self, timeout: float) -> bool:
        """Runs what is queued, then stops the threads; True if they ended within timeout."""
        with self._lock:
            self._stopping = True
            threads = list(self._live.values())
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


def _observe_queuing(batch: Batch) -> None:
    """Each task's wait from enqueue to its first batch (TF Serving's queuing_latency).

    Observed after the scheduler's lock is released: a histogram observation is a Python
    loop over up to 52 buckets, and `schedule` (on the event loop) takes that lock.
    """
    histogram = labelled(
        metrics.BATCHING_QUEUING_LATENCY, batch.params.thread_pool_name, batch.key[0]
    )
    for piece in batch.slices:
        if piece.start == 0:  # a task's later pieces waited at the head, already counted
            histogram.observe((batch.formed_at - piece.task.enqueue_time) * 1e6)


def _fail_expired(tasks: list[BatchTask]) -> None:
    for task in tasks:
        if task.future.set_running_or_notify_cancel():
            task.future.set_exception(
                DeadlineExceeded("Run() timeout exceeded while waiting in batching queue")
            )


def _internal(exc: BaseException) -> ServingError:
    log.error("batch processing failed unexpectedly", exc_info=exc)
    return Internal(f"{type(exc).__name__}: {exc}")
