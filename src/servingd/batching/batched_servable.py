"""A servable whose requests go through the shared batch scheduler when its model is batched.

TF Serving wraps a version's Session in a BatchingSession when the version loads, and the
request path never sees batching; here `BatchedLoader` wraps every version's servable in a
`BatchedServable` the same way. It is a Servable like the runtime's, and only its `start`
differs: a call that can be batched (Predict, Classify, Regress) becomes a task of the
shared scheduler when the registry batches the model, anything else starts as the
runtime's own `start` starts it. The parameters stay live (a reload changes them
without reloading the model, as before), so `start` reads them from the registry: one
dictionary lookup per request.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from servingd.batching.registry import BatchingParameterRegistry
from servingd.batching.submitter import BatchSubmitter
from servingd.core.errors import FailedPrecondition
from servingd.core.ids import ServableId
from servingd.core.loader import Loader, ResourceEstimate
from servingd.servables.servable import Call, Outputs, Servable, Workers
from servingd.servables.signatures import Signature

T = TypeVar("T")


class BatchedServable:
    """A runtime's servable (`runtime`) behind the batch scheduler (a Servable)."""

    def __init__(
        self,
        runtime: Servable,
        registry: BatchingParameterRegistry,
        submitter: BatchSubmitter,
    ) -> None:
        self.runtime = runtime
        self.id: ServableId = runtime.id
        self.meta_graph_def: Any = runtime.meta_graph_def
        self._registry = registry
        self._submitter = submitter

    def start(
        self, call: Call[T], timeout_s: float | None, workers: Workers
    ) -> concurrent.futures.Future[T]:
        params = self._registry.parameters_for(self.id)
        if params is not None:
            batch = call.batch_input(self.runtime)
            if batch is not None:
                return self._submitter.submit(
                    self.id,
                    self.runtime,
                    batch.signature,
                    batch.inputs,
                    batch.output_filter,
                    params,
                    timeout_s,
                    call.finish,
                )
        return self.runtime.start(call, timeout_s, workers)

    def signature(self, name: str = "") -> Signature:
        return self.runtime.signature(name)

    def signature_def_map(self, *, include_init_op: bool = True) -> Mapping[str, Any]:
        return self.runtime.signature_def_map(include_init_op=include_init_op)

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        strict_shapes: bool = False,
        timeout_s: float | None = None,
        in_caller_thread: bool = False,
    ) -> Outputs:
        """An unbatched run (the request path batches through `start`)."""
        return self.runtime.run(
            signature,
            inputs,
            output_filter,
            strict_shapes=strict_shapes,
            timeout_s=timeout_s,
            in_caller_thread=in_caller_thread,
        )

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetch_names: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> list[np.ndarray]:
        return self.runtime.run_tensors(feeds, fetch_names, timeout_s=timeout_s)

    def close(self) -> None:
        self.runtime.close()

    def __getattr__(self, name: str) -> Any:
        # What only one runtime has (TF Lite's interpreter pool) reads through.
        if name == "runtime":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.runtime, name)


class BatchedLoader:
    """A Loader whose servable is the inner loader's, wrapped in a BatchedServable."""

    def __init__(
        self, inner: Loader, registry: BatchingParameterRegistry, submitter: BatchSubmitter
    ) -> None:
        self._inner = inner
        self._registry = registry
        self._submitter = submitter
        self._servable: BatchedServable | None = None

    def estimate_resources(self) -> ResourceEstimate:
        return self._inner.estimate_resources()

    def load(self) -> None:
        self._inner.load()
        self._servable = BatchedServable(self._inner.servable(), self._registry, self._submitter)

    def unload(self) -> None:
        self._servable = None
        self._inner.unload()

    def servable(self) -> BatchedServable:
        if self._servable is None:
            raise FailedPrecondition("the servable is not loaded")
        return self._servable
