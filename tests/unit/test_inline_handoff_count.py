"""InferenceRunner tells the inline policy about every run it hands to a worker until that
run is done: also one that fails, and one cancelled before a worker took it (a count that
leaked would keep every later run off the loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import pytest

from servingd.apis.inference import InferenceRunner, ModelRequest
from servingd.apis.inline_runs import InlinePolicy
from servingd.core.handles import LoadedServable, ServableHandle
from servingd.core.ids import ServableId
from servingd.core.lookup import ServableLookup

SERVABLE = ServableId("model", 1)
INPUTS = {"x": np.zeros(4, np.float32)}
Submit = Callable[[Callable[[], Any]], "concurrent.futures.Future[Any]"]


@contextlib.contextmanager
def _workers(
    policy: InlinePolicy, threads: int
) -> Iterator[tuple[Submit, concurrent.futures.Future[Any]]]:
    """A runner on `threads` workers, one of them held by a run until the block ends."""
    release = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        runner = InferenceRunner(cast(ServableLookup, None), pool, inline=policy)

        def submit(fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
            started = runner._inline_or_submit(SERVABLE, "serving_default", INPUTS, fn)
            assert isinstance(started, concurrent.futures.Future)
            return started

        held = submit(release.wait)
        try:
            yield submit, held
        finally:
            release.set()  # the pool's shutdown waits for the held run
        held.result(timeout=10)


def test_the_count_covers_a_run_from_hand_off_to_done_and_a_failed_one() -> None:
    policy = InlinePolicy(max_s=0.002)
    with _workers(policy, threads=2) as (submit, _held):
        with pytest.raises(ZeroDivisionError):
            submit(lambda: 1 / 0).result(timeout=10)
        assert policy.runs_handed_off == 1
    assert policy.runs_handed_off == 0


def test_a_run_cancelled_before_a_worker_took_it_leaves_the_count() -> None:
    policy = InlinePolicy(max_s=0.002)
    with _workers(policy, threads=1) as (submit, _held):
        queued = submit(lambda: None)
        assert policy.runs_handed_off == 2
        assert queued.cancel()
        assert policy.runs_handed_off == 1
    assert policy.runs_handed_off == 0


class _OneVersion:
    """The one lookup call InferenceRunner.run makes: a handle on a loaded version."""

    def __init__(self) -> None:
        self.loaded = LoadedServable(SERVABLE, servable=None)

    def handle(self, name: str, version: int | None, label: str | None) -> ServableHandle:
        handle = self.loaded.acquire()
        assert handle is not None
        return handle


def test_a_multi_inference_on_a_worker_counts_as_a_run_there() -> None:
    """While a MultiInference call is on a worker, a short Predict leaves the loop free (as
    beside a handed-off Predict), and a slow Predict beside it does not count as measured
    alone: it does not push its signature's estimate over the inline limit."""
    asyncio.run(_multi_inference_beside_predicts())


async def _multi_inference_beside_predicts() -> None:
    policy = InlinePolicy(max_s=0.002)
    key = (SERVABLE, "serving_default")
    for _ in range(policy.min_runs):
        policy.record(key, 4, 0.001)  # 0.25 ms per element: 1 ms for INPUTS, within 2 ms
    release = threading.Event()
    lookup = _OneVersion()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runner = InferenceRunner(cast(ServableLookup, lookup), pool, inline=policy)
        multi = asyncio.ensure_future(
            runner.run(ModelRequest("model"), lambda _servable: release.wait(10))
        )
        try:
            deadline = time.monotonic() + 5
            while policy.runs_handed_off == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            assert policy.runs_handed_off == 1, "the MultiInference run was not counted"
            assert not policy.should_inline(key, 4)
            slow = runner._inline_or_submit(SERVABLE, "serving_default", INPUTS, time.sleep, 0.02)
            assert isinstance(slow, concurrent.futures.Future)
            slow.result(timeout=10)
        finally:
            release.set()
        assert (await multi).value is True
    assert policy.runs_handed_off == 0
    assert lookup.loaded.num_handles == 0
    assert policy.should_inline(key, 4)
