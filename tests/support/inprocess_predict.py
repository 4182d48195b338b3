"""`predict`: one Predict through an InferenceRunner, for tests that drive the runner
directly (the front ends build their PredictPlan themselves)."""

from __future__ import annotations

from collections.abc import Sequence

from servingd.apis.inference import (
    InferenceRunner,
    Inputs,
    InputsFor,
    ModelRequest,
    PredictPlan,
    PredictResult,
)


async def predict(
    runner: InferenceRunner,
    request: ModelRequest,
    inputs: Inputs | InputsFor,
    output_filter: Sequence[str] = (),
    timeout: float | None = None,
    *,
    large: bool = False,
) -> PredictResult:
    """``runner.run`` with a PredictPlan (``large``: the inputs are made on a worker
    thread), for callers that want only its PredictResult."""
    plan = PredictPlan(inputs, request.signature_name, output_filter, off_loop=large)
    return (await runner.run(request, plan, timeout)).value
