"""The Servable contract: one loaded version of a model, whatever runs it.

Every runtime implements `Servable` (``saved_model.SavedModelServable``,
``tflite.TfLiteServable``); the request path, warmup and the tf.Example APIs use nothing
else of it. Batching wraps a version in a servable with the same contract
(``servingd.batching.batched_servable``), so a caller never sees whether its model is batched.

A request reaches a version as a `Call`: the request checked against that version, which
the servable `start`s. A runtime runs it on a worker thread (`Workers`: the one interface
of where runs execute, the daemon's thread pool); the batched servable hands it to the
batch scheduler when its model is batched.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from servingd.core.ids import ServableId
from servingd.servables.signatures import Signature

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Outputs = dict[str, np.ndarray]


class Workers(Protocol):
    """Where a run executes: a pool of worker threads (concurrent.futures.Executor has it)."""

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]: ...


@dataclass(frozen=True, slots=True)
class BatchInput:
    """What one batch task of a call feeds (signature aliases) and fetches."""

    signature: Signature
    inputs: Mapping[str, np.ndarray]
    output_filter: Sequence[str]


class Call(Protocol[T_co]):
    """One request checked against one version, ready to run on it.

    It runs either directly (`run`, in the calling worker thread) or as a task of the batch
    scheduler: `batch_input` is what the task feeds and fetches, and `finish` makes the
    answer from the task's outputs (on the batch thread). TF Serving batches Predict,
    Classify and Regress this way; MultiInference never (`batch_input` is None).
    """

    def batch_input(self, servable: Servable) -> BatchInput | None: ...

    def run(self, servable: Servable, timeout_s: float | None) -> T_co: ...

    def finish(self, outputs: Outputs) -> T_co: ...


class Servable(Protocol):
    """One loaded version: its signatures, synchronous runs, and the start of a request.

    ``run`` and ``run_tensors`` are safe from many threads and raise ServingErrors (TF
    Serving's codes). With ``timeout_s`` a runtime stops waiting or running once it is over
    (DEADLINE_EXCEEDED) where it can. ``in_caller_thread`` is a hint from the batch
    processor, for a run known to be short: the runtime may execute its ops on the calling
    thread instead of handing them to its own threads (TensorFlow's inter-op pool); the
    timeout is then not enforced. ``close`` is the loader's unload.
    """

    @property
    def id(self) -> ServableId: ...

    @property
    def meta_graph_def(self) -> Any: ...

    def signature(self, name: str = "") -> Signature: ...

    def signature_def_map(self, *, include_init_op: bool = True) -> Mapping[str, Any]: ...

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        strict_shapes: bool = False,
        timeout_s: float | None = None,
        in_caller_thread: bool = False,
    ) -> Outputs: ...

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetch_names: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> list[np.ndarray]:
        """Feeds graph tensors by name and fetches others, with no signature checks (TF
        Serving's Session::Run with tensor names: the tf.Example APIs)."""
        ...

    def start(
        self, call: Call[T], timeout_s: float | None, workers: Workers
    ) -> concurrent.futures.Future[T]:
        """Starts `call` on this version and returns at once; the Future completes when it
        has run (cancelling it takes a call that has not started out of its queue)."""
        ...

    def close(self) -> None: ...


class RunsOnWorkers:
    """A runtime's `start`: the call runs on a worker thread."""

    def start(
        self, call: Call[T], timeout_s: float | None, workers: Workers
    ) -> concurrent.futures.Future[T]:
        servable: Any = self  # the runtime class that mixes this in is the Servable
        return workers.submit(call.run, servable, timeout_s)
