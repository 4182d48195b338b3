"""Stopping work from outside: a client that cancels, or a deadline that passes.

A request's work carries a `CancelToken`. Whoever can stop a run registers on it
(``on_cancel``): the SavedModel function runtime registers its TensorFlow cancellation
manager, whose ops then stop (a ``tf.while_loop`` within one iteration). Three things
cancel a token:

* the request's Future (`CancellableFuture.cancel`): the client cancelled (gRPC) or hung up
  (REST), or its deadline passed while waiting, and ``apis.inference`` cancels the Future;
* a run's deadline: one process-wide thread (`Deadlines`) keeps a heap of them;
* a batch whose every task was cancelled (batching.batch_processor): its run serves nobody.

Pure Python: the TensorFlow side lives with the runtime that uses it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class CancelToken:
    """Whether some work was cancelled, and why; calls its listeners once when it is.

    `cancel` may come from any thread, at any moment: a listener added after it is called
    at once, and a listener may be called twice in that race (what it stops must not mind).
    """

    __slots__ = ("_listeners", "reason")

    def __init__(self) -> None:
        self.reason: str | None = None  # "cancelled" or "deadline"
        self._listeners: list[Callable[[], object]] = []

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str = "cancelled") -> None:
        if self.reason is not None:
            return
        self.reason = reason
        for listener in list(self._listeners):
            listener()

    def on_cancel(self, listener: Callable[[], object]) -> None:
        self._listeners.append(listener)
        if self.reason is not None:
            listener()

    def discard(self, listener: Callable[[], object]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)


class _Entry:
    __slots__ = ("at", "seq", "token")

    def __init__(self, at: float, seq: int, token: CancelToken) -> None:
        self.at = at
        self.seq = seq
        self.token: CancelToken | None = token

    def __lt__(self, other: _Entry) -> bool:
        return (self.at, self.seq) < (other.at, other.seq)


class Deadlines:
    """A daemon thread that cancels each run whose deadline has passed.

    `add` and `done` are a lock and a heap operation (microseconds per run). A finished
    run's entry stays in the heap until it reaches the top, or until finished entries are
    over half of it (a client whose deadlines are hours long must not grow it without
    bound): then the heap is rebuilt without them.
    """

    COMPACT_AT = 1024  # finished entries before a rebuild is considered

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, background: bool = True
    ) -> None:
        """`background`: a thread calls `expire` when the next deadline is due (False: the
        caller drives `expire`, as the tests do on their own clock)."""
        self._clock = clock
        self._background = background
        self._heap: list[_Entry] = []
        self._finished = 0  # entries in the heap whose run is over
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, timeout_s: float, token: CancelToken) -> _Entry:
        entry = _Entry(self._clock() + timeout_s, next(self._seq), token)
        with self._cv:
            if self._thread is None and self._background:
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
            if entry.token is None:
                return
            entry.token = None
            self._finished += 1
            if self._finished > self.COMPACT_AT and 2 * self._finished > len(self._heap):
                self._heap = [e for e in self._heap if e.token is not None]
                heapq.heapify(self._heap)
                self._finished = 0

    def expire(self) -> int:
        """Cancels every run whose deadline has passed; returns how many (the thread's step)."""
        due: list[CancelToken] = []
        now = self._clock()
        with self._cv:
            while self._heap and (self._heap[0].token is None or self._heap[0].at <= now):
                entry = heapq.heappop(self._heap)
                if entry.token is None:
                    self._finished -= 1
                else:
                    due.append(entry.token)
                    entry.token = None
        for token in due:  # outside the lock: a token's listeners are the runtimes' code
            token.cancel("deadline")
        return len(due)

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

_current = threading.local()  # .token: the CancelToken of the work this thread does


def current_token() -> CancelToken | None:
    """The token of the work this thread runs (`running_with`), if any."""
    return getattr(_current, "token", None)


@contextlib.contextmanager
def running_with(token: CancelToken) -> Iterator[CancelToken]:
    """Makes `token` this thread's current one: the runs started inside watch it."""
    previous = current_token()
    _current.token = token
    try:
        yield token
    finally:
        _current.token = previous


class CancellableFuture(concurrent.futures.Future[T]):
    """A Future whose ``cancel`` also stops its work once it runs (through its token).

    Cancelling running work returns False, as concurrent.futures does; the Future then fails
    with the work's Cancelled error, or completes if the work was already finishing.
    """

    def __init__(self, token: CancelToken | None = None) -> None:
        super().__init__()
        self.token = token or CancelToken()

    def cancel(self) -> bool:
        if super().cancel():
            return True
        if not self.done():
            self.token.cancel("cancelled")
        return False


def run_cancellable(future: CancellableFuture[T], fn: Callable[[], T]) -> None:
    """Runs `fn` for `future` on this (worker) thread, with `future`'s token current."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        with running_with(future.token):
            result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def start_cancellable(submit: Callable[..., Any], fn: Callable[[], T]) -> CancellableFuture[T]:
    """Submits `fn` to a worker pool (`submit`), returning a Future that can stop it."""
    future: CancellableFuture[T] = CancellableFuture()
    submit(run_cancellable, future, fn)
    return future
