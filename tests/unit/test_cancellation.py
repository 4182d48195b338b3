"""core.cancellation: tokens, the deadline heap (on an injected clock) and the Futures."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from servingd.core.cancellation import (
    CancellableFuture,
    CancelToken,
    Deadlines,
    current_token,
    running_with,
    start_cancellable,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_calls_its_listeners_once_and_late_listeners_at_once() -> None:
    token = CancelToken()
    calls: list[str] = []
    token.on_cancel(lambda: calls.append("early"))
    gone = lambda: calls.append("discarded")  # noqa: E731
    token.on_cancel(gone)
    token.discard(gone)
    token.cancel("deadline")
    token.cancel("cancelled")  # the first reason stays; listeners are not called again
    token.on_cancel(lambda: calls.append("late"))
    assert token.reason == "deadline" and token.cancelled
    assert calls == ["early", "late"]


def test_deadlines_cancel_what_is_due_and_nothing_else() -> None:
    clock = Clock()
    deadlines = Deadlines(clock, background=False)
    soon, later, finished = CancelToken(), CancelToken(), CancelToken()
    deadlines.add(1.0, soon)
    deadlines.add(5.0, later)
    deadlines.done(deadlines.add(0.5, finished))
    assert deadlines.expire() == 0
    clock.now += 1.0
    assert deadlines.expire() == 1
    assert soon.reason == "deadline" and not later.cancelled and not finished.cancelled
    clock.now += 10.0
    assert deadlines.expire() == 1 and later.reason == "deadline"
    assert len(deadlines) == 0


def test_finished_runs_do_not_grow_the_heap_without_bound() -> None:
    """Hour-long deadlines of runs that end in microseconds: the heap is rebuilt once its
    finished entries are over half of it."""
    deadlines = Deadlines(Clock(), background=False)
    for _ in range(20_000):
        deadlines.done(deadlines.add(3600.0, CancelToken()))
    assert len(deadlines) <= 2 * Deadlines.COMPACT_AT + 2


def test_the_deadline_thread_cancels_a_run_it_is_given() -> None:
    deadlines = Deadlines()
    token = CancelToken()
    cancelled = threading.Event()
    token.on_cancel(cancelled.set)
    deadlines.add(0.01, token)
    assert cancelled.wait(60), "the deadline thread never cancelled the run"
    assert token.reason == "deadline"


def test_running_with_sets_and_restores_the_current_token() -> None:
    outer, inner = CancelToken(), CancelToken()
    assert current_token() is None
    with running_with(outer):
        with running_with(inner):
            assert current_token() is inner
        assert current_token() is outer
    assert current_token() is None


def test_cancelling_a_running_future_cancels_its_token() -> None:
    future: CancellableFuture[int] = CancellableFuture()
    assert future.set_running_or_notify_cancel()
    assert future.cancel() is False  # running: concurrent.futures' answer
    assert future.token.reason == "cancelled"
    queued: CancellableFuture[int] = CancellableFuture()
    assert queued.cancel() is True and not queued.token.cancelled


def test_work_started_cancellably_sees_its_token_and_stops_when_cancelled() -> None:
    started, stop = threading.Event(), threading.Event()

    def work() -> str:
        token = current_token()
        assert token is not None
        token.on_cancel(stop.set)
        started.set()
        if not stop.wait(60):
            return "never stopped"
        raise RuntimeError(f"stopped: {token.reason}")

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = start_cancellable(pool.submit, work)
        assert started.wait(60)
        future.cancel()
        with pytest.raises(RuntimeError, match="stopped: cancelled"):
            future.result(timeout=60)
