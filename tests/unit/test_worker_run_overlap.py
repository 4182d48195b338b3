"""InferenceRunner tells the inline policy about every run on a worker: a Predict run that
another worker run overlapped (also a MultiInference call, which has no run-time record of
its own) was not measured alone, so it does not raise its signature's estimate."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import cast

import numpy as np

from servingd.apis.inference import InferenceRunner, ModelRequest
from servingd.apis.inline_runs import InlinePolicy
from servingd.apis.loop_load import LoopLoad
from servingd.core.handles import LoadedServable, ServableHandle
from servingd.core.ids import ServableId
from servingd.core.lookup import ServableLookup

SERVABLE = ServableId("model", 1)
KEY = (SERVABLE, "serving_default")
INPUTS = {"x": np.zeros(4, np.float32)}


class _OneVersion:
    """The one lookup call InferenceRunner.run makes: a handle on a loaded version."""

    def __init__(self) -> None:
        self.loaded = LoadedServable(SERVABLE, servable=None)

    def handle(self, name: str, version: int | None, label: str | None) -> ServableHandle:
        handle = self.loaded.acquire()
        assert handle is not None
        return handle


def _loaded_policy() -> tuple[InlinePolicy, LoopLoad]:
    """A signature that may go inline (1 ms for INPUTS, within 2 ms), on a loaded loop: its
    runs go to the workers."""
    load = LoopLoad()
    load.share = 1.0
    policy = InlinePolicy(max_s=0.002, load=load)
    for _ in range(policy.min_runs):
        policy.record(KEY, 4, 0.001)
    return policy, load


def _submit(runner: InferenceRunner, seconds: float) -> concurrent.futures.Future[None]:
    started = runner._inline_or_submit(SERVABLE, "serving_default", INPUTS, time.sleep, seconds)
    assert isinstance(started, concurrent.futures.Future)
    return started


def test_a_slow_run_alone_on_the_workers_raises_the_estimate() -> None:
    # The control for the tests below: this is what an overlap must prevent.
    policy, load = _loaded_policy()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runner = InferenceRunner(cast(ServableLookup, None), pool, inline=policy)
        _submit(runner, 0.02).result(timeout=10)
    load.share = 0.0
    assert not policy.should_inline(KEY, 4)


def test_a_slow_run_beside_another_worker_run_leaves_the_estimate() -> None:
    policy, load = _loaded_policy()
    started, release = threading.Event(), threading.Event()

    def held(_seconds: float) -> None:
        started.set()
        assert release.wait(10)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runner = InferenceRunner(cast(ServableLookup, None), pool, inline=policy)
        longer = runner._inline_or_submit(SERVABLE, "serving_default", INPUTS, held, 0.0)
        assert isinstance(longer, concurrent.futures.Future)
        try:
            assert started.wait(10)  # in flight for as long as the test holds it
            _submit(runner, 0.02).result(timeout=10)
        finally:
            release.set()
        longer.result(timeout=10)
    load.share = 0.0
    assert policy.should_inline(KEY, 4)


def test_a_multi_inference_on_a_worker_counts_as_a_run_there() -> None:
    asyncio.run(_multi_inference_beside_a_predict())


async def _multi_inference_beside_a_predict() -> None:
    policy, load = _loaded_policy()
    started, release = threading.Event(), threading.Event()
    lookup = _OneVersion()

    def multi_inference(_servable: object) -> bool:
        started.set()
        return release.wait(10)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runner = InferenceRunner(cast(ServableLookup, lookup), pool, inline=policy)
        multi = asyncio.ensure_future(runner.run(ModelRequest("model"), multi_inference))
        try:
            assert await asyncio.to_thread(started.wait, 10)
            _submit(runner, 0.02).result(timeout=10)
        finally:
            release.set()
        assert (await multi).value is True
    assert lookup.loaded.num_handles == 0
    load.share = 0.0
    assert policy.should_inline(KEY, 4)
