"""ExampleApi through InferenceRunner.run in-process: example-count metrics and deadlines.

Real manager, lookup and SavedModel (half_plus_two, TF1 export); no daemon, so the
process-wide metrics registry can be read directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorflow_serving.apis import regression_pb2

from servingd.apis.inference import InferenceRunner, ModelRequest, OnServable
from servingd.apis.metrics import REQUEST_EXAMPLE_COUNT_TOTAL
from servingd.apis.tf_example import ExampleApi
from servingd.core.errors import DeadlineExceeded, InvalidArgument
from servingd.core.events import EventBus
from servingd.core.ids import ServableId
from servingd.core.lookup import ServableLookup
from servingd.core.manager import AspiredVersionsManager, ManagerOptions
from servingd.core.metrics import REGISTRY
from servingd.core.monitor import ServableStateMonitor
from servingd.core.source import AspiredVersion
from servingd.core.states import ServableState
from servingd.servables.saved_model import SavedModelLoader
from support.inprocess_predict import predict

MODEL = "hp2_inprocess"


@pytest.fixture(scope="module")
def runner(testdata: Path) -> Iterator[InferenceRunner]:
    bus: EventBus[ServableState] = EventBus()
    monitor = ServableStateMonitor(bus)
    manager = AspiredVersionsManager(bus, ManagerOptions(manage_interval_s=0.02))
    manager.start()
    servable_id = ServableId(MODEL, 123)
    path = testdata / "saved_model_half_plus_two_cpu" / "00000123"
    manager.set_aspired_versions(
        MODEL, [AspiredVersion(servable_id, SavedModelLoader(servable_id, str(path)))]
    )
    assert monitor.wait_until_settled([MODEL], 60)
    executor = concurrent.futures.ThreadPoolExecutor(4)
    yield InferenceRunner(ServableLookup(manager), executor)
    executor.shutdown()
    manager.stop(timeout=10)


def regression_request(*xs: float) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "regress_x_to_y"
    for x in xs:
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    return request


def histogram_count() -> float:
    value = REGISTRY.get_sample_value(
        ":tensorflow:serving:request_example_counts_count", {"model": MODEL}
    )
    return value or 0.0


def test_example_counts_are_recorded_per_successful_request(runner: InferenceRunner) -> None:
    api = ExampleApi(runner)
    spec = ModelRequest(MODEL, signature_name="regress_x_to_y")
    total, count = REQUEST_EXAMPLE_COUNT_TOTAL.value(MODEL), histogram_count()
    reply = asyncio.run(api.regress(spec, regression_request(1.0, 2.0, 5.0), 30.0))
    assert [r.value for r in reply.result.regressions] == [2.5, 3.0, 4.5]
    assert REQUEST_EXAMPLE_COUNT_TOTAL.value(MODEL) == total + 3
    assert histogram_count() == count + 1
    with pytest.raises(InvalidArgument, match=r"^Input is empty\. \[model hp2_inprocess"):
        asyncio.run(api.regress(spec, regression_request(), 30.0))
    assert REQUEST_EXAMPLE_COUNT_TOTAL.value(MODEL) == total + 3  # failures are not counted


def test_run_honours_the_deadline_and_names_the_answering_version(
    runner: InferenceRunner,
) -> None:
    release = threading.Event()

    def slow(servable: object) -> object:
        release.wait(10)
        return servable

    async def scenario() -> None:
        with pytest.raises(DeadlineExceeded):
            await runner.run(ModelRequest(MODEL), OnServable(slow), timeout=0.05)

    asyncio.run(scenario())
    release.set()
    result = asyncio.run(runner.run(ModelRequest(MODEL), OnServable(lambda s: s.id), timeout=10))
    assert result.id == ServableId(MODEL, 123)
    assert result.value == ServableId(MODEL, 123)


def test_predict_builds_inputs_from_the_leased_signature(runner: InferenceRunner) -> None:
    seen: list[Any] = []

    def inputs_for(signature: Any) -> dict[str, np.ndarray]:
        seen.append(signature)
        dtype = signature.inputs["x"].dtype
        return {"x": np.array([[1.0], [2.0]], dtype=dtype)}

    result = asyncio.run(predict(runner, ModelRequest(MODEL), inputs_for, timeout=30.0))
    assert [s.name for s in seen] == ["serving_default"]
    assert result.id == ServableId(MODEL, 123)
    assert result.outputs["y"].ravel().tolist() == [2.5, 3.0]


def test_predict_input_errors_are_the_requests_own(runner: InferenceRunner) -> None:
    def refuse(_signature: Any) -> dict[str, np.ndarray]:
        raise InvalidArgument("bad JSON")

    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(predict(runner, ModelRequest(MODEL), refuse, timeout=30.0))
    assert caught.value.message == "bad JSON"  # no model/version suffix
    # The refused request leaves the version serving.
    ok = asyncio.run(predict(runner, ModelRequest(MODEL), {"x": np.ones((1, 1), np.float32)}))
    assert ok.outputs["y"].ravel().tolist() == [2.5]
