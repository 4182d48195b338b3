"""Classify, Regress and MultiInference for the front ends: request proto in, response out.

Protocol-neutral: the gRPC servicer passes the request protos through; the REST handlers
build the same protos from TF Serving's JSON first. The model-side work (serializing the
examples, running the signature, reading its outputs) is ``servingd.servables.tf_example``;
this layer finds the version and runs the request through the InferenceRunner (deadline,
model/version in errors) and records TF Serving's per-request example counts.

Classify and Regress of a batched model go through the batch scheduler, as in TF Serving
(their Session::Run matches the signature's tensors); unbatched, they run like an unbatched
Predict (on a worker thread): the plan (``servables.tf_example.ExamplePlan``) is the Call,
and the version decides. MultiInference always runs unbatched: it fetches several
signatures' outputs at once, which matches no single batching signature (TF Serving
bypasses its batcher then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from servingd.apis.inference import InferenceRunner, ModelRequest, OnServable, with_context
from servingd.apis.metrics import REQUEST_EXAMPLE_COUNT_TOTAL, REQUEST_EXAMPLE_COUNTS
from servingd.core.errors import ServingError
from servingd.servables import tf_example
from servingd.servables.servable import Servable
from servingd.servables.tf_example import ExamplePlan, ExampleResponse


def record_example_count(model_name: str, count: int) -> None:
    """TF Serving's RecordRequestExampleCount (after a successful run)."""
    REQUEST_EXAMPLE_COUNTS.labels(model=model_name).observe(count)
    REQUEST_EXAMPLE_COUNT_TOTAL.inc(model_name, amount=count)


@dataclass(frozen=True, slots=True)
class _ExamplePlanning:
    """Classify or Regress as a Plan: the request checked against the leased version (on
    the loop); its errors name the version."""

    make: Callable[..., ExamplePlan]
    request: Any
    check_method_name: bool
    off_loop: bool = False

    def __call__(self, servable: Servable) -> ExamplePlan:
        try:
            return self.make(servable, self.request, check_method_name=self.check_method_name)
        except ServingError as exc:
            raise with_context(exc, servable.id) from None


class ExampleApi:
    """The three tf.Example APIs over one InferenceRunner.

    ``check_method_name`` is TF Serving's ``--enable_signature_method_name_check``.
    """

    def __init__(self, runner: InferenceRunner, *, check_method_name: bool = False) -> None:
        self._runner = runner
        self._check_method_name = check_method_name

    async def _planned(
        self,
        spec: ModelRequest,
        make: Callable[..., ExamplePlan],
        request: Any,
        timeout: float | None,
    ) -> Any:
        plan = _ExamplePlanning(make, request, self._check_method_name)
        result = await self._runner.run(spec, plan, timeout)
        record_example_count(spec.name, result.value.num_examples)
        return result.value.response

    async def classify(self, spec: ModelRequest, request: Any, timeout: float | None) -> Any:
        """ClassificationRequest -> ClassificationResponse."""
        return await self._planned(spec, tf_example.plan_classify, request, timeout)

    async def regress(self, spec: ModelRequest, request: Any, timeout: float | None) -> Any:
        """RegressionRequest -> RegressionResponse."""
        return await self._planned(spec, tf_example.plan_regress, request, timeout)

    async def multi_inference(self, spec: ModelRequest, request: Any, timeout: float | None) -> Any:
        """MultiInferenceRequest -> MultiInferenceResponse; ``spec``: the first task's model."""
        call: Callable[[Servable], ExampleResponse] = partial(
            tf_example.multi_inference,
            request=request,
            check_method_name=self._check_method_name,
            timeout_s=timeout,
        )
        result = await self._runner.run(spec, OnServable(call), timeout)
        record_example_count(spec.name, result.value.num_examples)
        return result.value.response
