"""InferenceRunner never runs a model, nor decodes a large request, on the event loop.

The runs here block until the event loop itself releases them: a run held on the loop
thread could never be released, so each test would hit its deadline instead of passing.
That is the mechanism that keeps health checks answering behind any model run, shown
without a race against the clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from servingd.apis.inference import InferenceRunner, ModelRequest, OnServable
from servingd.core.errors import DeadlineExceeded
from servingd.core.handles import LoadedServable, ServableHandle
from servingd.core.ids import ServableId
from servingd.core.lookup import ServableLookup
from servingd.servables.servable import RunsOnWorkers
from support.inprocess_predict import predict

SERVABLE = ServableId("model", 1)
WAIT_S = 10.0


class _GatedServable(RunsOnWorkers):
    """A servable whose runs block until `release` is set, recording their threads."""

    id = SERVABLE

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[int] = []

    def signature(self, name: str = "") -> SimpleNamespace:
        return SimpleNamespace(name=name or "serving_default")

    def run(
        self,
        signature: object,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        timeout_s: float | None = None,
    ) -> dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        assert self.release.wait(WAIT_S), "the loop never released the run"
        return {"y": inputs["x"] * 2}


class _OneVersion:
    def __init__(self, servable: Any) -> None:
        self.loaded = LoadedServable(SERVABLE, servable=servable)

    def handle(self, name: str, version: int | None, label: str | None) -> ServableHandle:
        handle = self.loaded.acquire()
        assert handle is not None
        return handle


def _runner(
    servable: _GatedServable, pool: concurrent.futures.Executor
) -> tuple[InferenceRunner, _OneVersion]:
    lookup = _OneVersion(servable)
    return InferenceRunner(cast(ServableLookup, lookup), pool), lookup


async def _released_by_the_loop(servable: _GatedServable) -> None:
    """What a health check does meanwhile: runs on the loop, here releasing the run."""
    while not servable.threads:
        await asyncio.sleep(0.001)
    servable.release.set()


@pytest.mark.parametrize("large", [False, True])
def test_predict_runs_and_decodes_on_a_worker(large: bool) -> None:
    async def scenario() -> None:
        servable = _GatedServable()
        decoded_on: list[int] = []

        def decode(_signature: object) -> dict[str, np.ndarray]:
            decoded_on.append(threading.get_ident())
            return {"x": np.ones(3, np.float32)}

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runner, lookup = _runner(servable, pool)
            released = asyncio.ensure_future(_released_by_the_loop(servable))
            result = await asyncio.wait_for(
                predict(runner, ModelRequest("model"), decode, large=large), WAIT_S
            )
            await released
        loop_thread = threading.get_ident()
        assert result.outputs["y"].tolist() == [2.0, 2.0, 2.0]
        assert servable.threads and loop_thread not in servable.threads
        assert (decoded_on[0] != loop_thread) is large
        assert lookup.loaded.num_handles == 0

    asyncio.run(scenario())


def test_run_and_off_loop_work_on_a_worker() -> None:
    async def scenario() -> None:
        servable = _GatedServable()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runner, _ = _runner(servable, pool)
            released = asyncio.ensure_future(_released_by_the_loop(servable))
            result = await asyncio.wait_for(
                runner.run(
                    ModelRequest("model"),
                    OnServable(lambda s: s.run(None, {"x": np.ones(1, np.float32)})),
                ),
                WAIT_S,
            )
            await released
            worker = await runner.off_loop(threading.get_ident)
        assert result.value["y"].tolist() == [2.0]
        assert threading.get_ident() not in (*servable.threads, worker)

    asyncio.run(scenario())


def test_a_run_past_its_deadline_answers_deadline_exceeded_and_keeps_its_lease() -> None:
    async def scenario() -> None:
        servable = _GatedServable()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runner, lookup = _runner(servable, pool)
            inputs = {"x": np.ones(1, np.float32)}
            with pytest.raises(DeadlineExceeded):
                await predict(runner, ModelRequest("model"), inputs, timeout=0.05)
            # TensorFlow still holds the session: the version stays leased until it ends.
            assert lookup.loaded.num_handles == 1
            servable.release.set()
            for _ in range(1000):
                if lookup.loaded.num_handles == 0:
                    break
                await asyncio.sleep(0.01)
            assert lookup.loaded.num_handles == 0

    asyncio.run(scenario())
