"""Classify, Regress and MultiInference for the front ends: request proto in, response out.

Protocol-neutral: the gRPC servicer passes the request protos through; the REST handlers
build the same protos from TF Serving's JSON first. The model-side work (serializing the
examples, running the signature, reading its outputs) is ``servingd.servables.tf_example``;
this layer finds the version and runs the request through the InferenceRunner (deadline,
model/version in errors) and records TF Serving's per-request example counts.

Classify and Regress of a batched model go through the batch scheduler, as in TF Serving
(their Session::Run matches the signature's tensors); unbatched, they run like an unbatched
Predict (on a worker thread). MultiInference always runs
unbatched: it fetches several signatures' outputs at once, which matches no single batching
signature (TF Serving bypasses its batcher then).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from servingd.apis.inference import InferenceRunner, ModelRequest
from servingd.apis.metrics import REQUEST_EXAMPLE_COUNT_TOTAL, REQUEST_EXAMPLE_COUNTS
from servingd.servables import tf_example
from servingd.servables.tf_example import ExampleResponse


def record_example_count(model_name: str, count: int) -> None:
    """TF Serving's RecordRequestExampleCount (after a successful run)."""
    REQUEST_EXAMPLE_COUNTS.labels(model=model_name).observe(count)
    REQUEST_EXAMPLE_COUNT_TOTAL.inc(model_name, amount=count)


class ExampleApi:
    """The three tf.Example APIs over one InferenceRunner.

    ``check_method_name`` is TF Serving's ``--enable_signature_method_name_check``.
    """

    def __init__(self, runner: InferenceRunner, *, check_method_name: bool = False) -> None:
        self._runner = runner
        self._check_method_name = check_method_name

    async def _run(
        self,
        spec: ModelRequest,
        fn: Callable[..., ExampleResponse],
        request: Any,
        timeout: float | None,
    ) -> Any:
        call = partial(
            fn, request=request, check_method_name=self._check_method_name, timeout_s=timeout
        )
        result = await self._runner.run(spec, call, timeout)
        record_example_count(spec.name, result.value.num_examples)
        return result.value.response

    async def _run_planned(
        self,
        spec: ModelRequest,
        plan: Callable[..., tf_example.ExamplePlan],
        request: Any,
        timeout: float | None,
    ) -> Any:
        make_plan = partial(plan, request=request, check_method_name=self._check_method_name)
        result = await self._runner.run_planned(spec, make_plan, timeout)
        record_example_count(spec.name, result.value.num_examples)
        return result.value.response

    async def classify(self, spec: ModelRequest, request: Any, timeout: float | None) -> Any:
        """ClassificationRequest -> ClassificationResponse."""
        return await self._run_planned(spec, tf_example.plan_classify, request, timeout)

    async def regress(self, spec: ModelRequest, request: Any, timeout: float | None) -> Any:
        """RegressionRequest -> RegressionResponse."""
        return await self._run_planned(spec, tf_example.plan_regress, request, timeout)

    async def multi_inference(self, spec: ModelRequest, request: Any, timeout: float | None) -> Any:
        """MultiInferenceRequest -> MultiInferenceResponse; ``spec``: the first task's model."""
        return await self._run(spec, tf_example.multi_inference, request, timeout)
