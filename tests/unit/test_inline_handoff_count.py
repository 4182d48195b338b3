"""InferenceRunner tells the inline policy about every run it hands to a worker until that
run is done: also one that fails, and one cancelled before a worker took it (a count that
leaked would keep every later run off the loop)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import pytest

from servingd.apis.inference import InferenceRunner
from servingd.apis.inline_runs import InlinePolicy
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
