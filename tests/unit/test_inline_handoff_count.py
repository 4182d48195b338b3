"""InferenceRunner tells the inline policy about every run it hands to a worker until that
run is done: also one that fails, and one cancelled before a worker took it (a count that
leaked would keep every later run off the loop)."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, cast

import numpy as np
import pytest

from servingd.apis.inference import InferenceRunner
from servingd.apis.inline_runs import InlinePolicy
from servingd.core.ids import ServableId
from servingd.core.lookup import ServableLookup

SERVABLE = ServableId("model", 1)
INPUTS = {"x": np.zeros(4, np.float32)}


def _runner(policy: InlinePolicy, pool: concurrent.futures.Executor) -> InferenceRunner:
    return InferenceRunner(cast(ServableLookup, None), pool, inline=policy)


def _submit(runner: InferenceRunner, fn: Any) -> concurrent.futures.Future[Any]:
    started = runner._inline_or_submit(SERVABLE, "serving_default", INPUTS, fn)
    assert isinstance(started, concurrent.futures.Future)
    return started


def test_the_count_covers_a_run_from_hand_off_to_done_and_a_failed_one() -> None:
    policy = InlinePolicy(max_s=0.002)
    release = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        try:
            runner = _runner(policy, pool)
            blocked = _submit(runner, release.wait)
            failing = _submit(runner, lambda: 1 / 0)
            with pytest.raises(ZeroDivisionError):
                failing.result(timeout=10)
            assert policy.runs_handed_off == 1
        finally:
            release.set()  # the pool's shutdown waits for the blocked run
        blocked.result(timeout=10)
    assert policy.runs_handed_off == 0


def test_a_run_cancelled_before_a_worker_took_it_leaves_the_count() -> None:
    policy = InlinePolicy(max_s=0.002)
    release = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            runner = _runner(policy, pool)
            busy = _submit(runner, release.wait)
            queued = _submit(runner, lambda: None)
            assert policy.runs_handed_off == 2
            assert queued.cancel()
            assert policy.runs_handed_off == 1
        finally:
            release.set()
        busy.result(timeout=10)
    assert policy.runs_handed_off == 0
