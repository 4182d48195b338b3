"""BatchedServable: the version decides where a call runs, from the live parameters."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from servingd.apis.inference import OnServable, PredictPlan
from servingd.batching import metrics
from servingd.batching.batched_servable import BatchedLoader, BatchedServable
from servingd.batching.parameters import BatchingParameters
from servingd.batching.registry import BatchingParameterRegistry
from servingd.batching.scheduler import SharedBatchScheduler
from servingd.batching.submitter import BatchSubmitter
from servingd.core.ids import ServableId
from servingd.servables.servable import RunsOnWorkers

SID = ServableId("bs", 1)
WAIT = 10.0


class _Signature:
    name = "serving_default"
    inputs: Mapping[str, Any] = {"x": None}
    outputs: Mapping[str, Any] = {"y": None}

    def validate_inputs(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(inputs["x"])]

    def validate_output_filter(self, output_filter: Sequence[str]) -> tuple[str, ...]:
        return tuple(output_filter) or ("y",)


class _Runtime(RunsOnWorkers):
    id = SID
    meta_graph_def = None
    pool = SimpleNamespace(size=3)  # a runtime's own attribute

    def signature(self, name: str = "") -> Any:
        return _Signature()

    def run(
        self,
        signature: Any,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        **_kwargs: Any,
    ) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * 2}

    def close(self) -> None:
        pass


class _Loader:
    def __init__(self) -> None:
        self.runtime = _Runtime()

    def estimate_resources(self) -> Any:
        return None

    def load(self) -> None:
        pass

    def unload(self) -> None:
        pass

    def servable(self) -> _Runtime:
        return self.runtime


@pytest.fixture
def parts() -> Iterator[tuple[BatchingParameterRegistry, BatchedServable]]:
    registry = BatchingParameterRegistry(SharedBatchScheduler(1))
    loader = BatchedLoader(_Loader(), registry, BatchSubmitter(registry.scheduler))
    loader.load()
    yield registry, loader.servable()
    registry.scheduler.stop(5.0)


def _predict(servable: BatchedServable, pool: concurrent.futures.Executor) -> Any:
    plan = PredictPlan({"x": np.ones((2, 1), np.float32)})
    return servable.start(plan(servable), None, pool).result(WAIT)


def test_the_live_parameters_decide_batched_or_not(
    parts: tuple[BatchingParameterRegistry, BatchedServable],
) -> None:
    registry, servable = parts
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        before = metrics.BATCHING_WRAPPED_RUN_COUNT.value("bs")
        assert _predict(servable, pool).outputs["y"].tolist() == [[2.0], [2.0]]
        assert metrics.BATCHING_WRAPPED_RUN_COUNT.value("bs") == before  # a worker ran it
        registry.set_parameters({"bs": BatchingParameters(max_batch_size=4)})
        result = _predict(servable, pool)
        assert (result.id, result.signature_name) == (SID, "serving_default")
        assert result.outputs["y"].tolist() == [[2.0], [2.0]]
        assert metrics.BATCHING_WRAPPED_RUN_COUNT.value("bs") == before + 1  # a batch ran it
        # A call with nothing to batch (MultiInference) runs on a worker, on the runtime.
        call = OnServable(lambda s: s)
        assert servable.start(call, None, pool).result(WAIT) is servable.runtime


def test_it_is_the_runtime_for_everything_else(
    parts: tuple[BatchingParameterRegistry, BatchedServable],
) -> None:
    _, servable = parts
    assert servable.id == SID
    assert servable.pool.size == 3
