"""Stopping a TensorFlow run from outside: a client that cancels, or a deadline that passes.

Each run gets its own `RunHandle`, holding a C++ ``CancellationManager`` that the run's ops
watch: ``cancel`` stops them (a ``tf.while_loop`` within one iteration). Three things call it:

* the request's Future (`CancellableFuture.cancel`): the client cancelled (gRPC) or hung up
  (REST), and ``apis.inference`` cancels the Future it awaited;
* the deadline: one process-wide thread (`Deadlines`) keeps a heap of the runs' deadlines;
* nothing else: a run with neither ends when its graph does.

TensorFlow's own ``CancellationManager.get_cancelable_function`` is not used: its "active
manager" is a module global (``tensorflow/python/eager/cancellation.py``), which races
between worker threads.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tensorflow.python.eager import cancellation

T = TypeVar("T")


class RunHandle:
    """One run's cancellation: its manager, and why it was cancelled (if it was)."""

    __slots__ = ("manager", "reason")

    def __init__(self) -> None:
        self.manager = cancellation.CancellationManager()
        self.reason: str | None = None  # "cancelled" or "deadline"

    def cancel(self, reason: str = "cancelled") -> None:
        if self.reason is None:
            self.reason = reason
        self.manager.start_cancel()


class _Entry:
    __slots__ = ("at", "handle", "seq")

    def __init__(self, at: float, seq: int, handle: RunHandle) -> None:
        self.at = at
        self.seq = seq
        self.handle: RunHandle | None = handle

    def __lt__(self, other: _Entry) -> bool:
        return (self.at, self.seq) < (other.at, other.seq)


class Deadlines:
    """A daemon thread that cancels each run whose deadline has passed.

    `add` and `done` are a lock and a heap operation (microseconds per run). A finished
    run's entry stays in the heap until it reaches the top, or until finished entries are
    over half of it (a client whose deadlines are hours long must not grow it without
    bound): then the heap is rebuilt without them. The clock is injectable for tests.
    """

    COMPACT_AT = 1024  # finished entries before a rebuild is considered

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[_Entry] = []
        self._finished = 0  # entries in the heap whose run is over
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, timeout_s: float, handle: RunHandle) -> _Entry:
        entry = _Entry(self._clock() + timeout_s, next(self._seq), handle)
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="servingd-run-deadlines", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cv.notify()
        return entry

    def done(self, entry: _Entry) -> None:
        """The run is over: its deadline no longer matters."""
        with self._cv:
            if entry.handle is None:
                return
            entry.handle = None
            self._finished += 1
            if self._finished > self.COMPACT_AT and 2 * self._finished > len(self._heap):
                self._heap = [e for e in self._heap if e.handle is not None]
                heapq.heapify(self._heap)
                self._finished = 0

    def expire(self) -> int:
        """Cancels every run whose deadline has passed; returns how many (the thread's step)."""
        expired = 0
        now = self._clock()
        with self._cv:
            while self._heap and (self._heap[0].handle is None or self._heap[0].at <= now):
                entry = heapq.heappop(self._heap)
                if entry.handle is None:
                    self._finished -= 1
                else:
                    entry.handle.cancel("deadline")
                    entry.handle = None
                    expired += 1
        return expired

    def __len__(self) -> int:
        """Entries in the heap, finished ones included (what the heap costs in memory)."""
        with self._cv:
            return len(self._heap)

    def _loop(self) -> None:
        while True:
            self.expire()
            with self._cv:
                if self._heap:
                    self._cv.wait(max(0.0, self._heap[0].at - self._clock()))
                else:
                    self._cv.wait()


DEADLINES = Deadlines()

_current = threading.local()  # .handle: the RunHandle of the call this worker thread runs


def current_handle() -> RunHandle | None:
    """The handle of the request this thread runs (set by `run_cancellable`), if any."""
    return getattr(_current, "handle", None)


class CancellableFuture(concurrent.futures.Future[T]):
    """A call's Future whose ``cancel`` also stops the call once it runs.

    Cancelling a running call returns False, as concurrent.futures does; the Future then
    fails with the run's Cancelled error a moment later.
    """

    def __init__(self, handle: RunHandle) -> None:
        super().__init__()
        self._handle = handle

    def cancel(self) -> bool:
        if super().cancel():
            return True
        if not self.done():
            self._handle.cancel("cancelled")
        return False


def run_cancellable(future: CancellableFuture[T], fn: Callable[[], T]) -> None:
    """Runs `fn` for `future` on this (worker) thread, with `future`'s handle current, so
    that the TensorFlow runs `fn` makes use it."""
    if not future.set_running_or_notify_cancel():
        return
    _current.handle = future._handle
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)
    finally:
        _current.handle = None


def start_cancellable(submit: Callable[..., Any], fn: Callable[[], T]) -> CancellableFuture[T]:
    """Submits `fn` to a worker pool (`submit`), returning a Future that can stop it."""
    future: CancellableFuture[T] = CancellableFuture(RunHandle())
    submit(run_cancellable, future, fn)
    return future
