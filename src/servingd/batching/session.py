"""BatchingSession: runs servable signatures through the shared scheduler.

TF Serving wraps each version's Session in a BatchingSession; here one object serves all
models: `parameters_for(servable_id)` says whether (and how) a version is batched, and `submit`
validates one request the way an unbatched run would (so a bad request fails alone, with
the same message), enqueues it, and returns a Future of its own outputs. The batch
processor merges the tasks' inputs, runs the servable once, and splits the outputs.

The servable object and signature travel with each queue's processor; a queue is keyed by
(model, version, signature), so a batch never mixes versions. Callers keep their servable
handle until the Future is done: the batch that contains the task has then run.

A batch expected to run within `SHORT_BATCH_RUN_S` (from its signature's last batched run,
per padded row) executes TensorFlow's ops on the batch thread itself (`in_caller_thread`)
instead of handing each step to TensorFlow's inter-op threads: for a
run that short the hand-offs cost more than the ops. Longer runs keep the inter-op pool
(independent branches of a big graph run in parallel there). A batched run has no
TensorFlow deadline either way: its tasks' deadlines are checked when the batch forms.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from servingd.batching import metrics, tensors
from servingd.batching.parameters import BatchingParameters
from servingd.batching.scheduler import Batch, BatchTask, Outputs, SharedBatchScheduler
from servingd.core.ids import ServableId
from servingd.core.metrics import labelled


class BatchableSignature(Protocol):
    """What the batching layer needs of a signature (servables.saved_model.Signature)."""

    name: str

    def validate_inputs(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...

    def validate_output_filter(self, output_filter: Sequence[str]) -> tuple[str, ...]: ...

    @property
    def inputs(self) -> Mapping[str, Any]: ...

    @property
    def outputs(self) -> Mapping[str, Any]: ...


class BatchableServable(Protocol):
    def run(
        self,
        signature: Any,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        in_caller_thread: bool = False,
    ) -> dict[str, np.ndarray]: ...


# Batched runs expected within this execute TensorFlow's ops on the batch thread. Bench box
# (2 vCPU, 1 client, batch timeout 0): half_plus_two p50 1.5-2.1 -> 1.2-1.5 ms, MLP
# 784-512-512-10 1.7-1.9 -> 1.4-1.75 ms; at 64 clients even. The wide MLP's runs (5 ms and
# up) stay on the pool.
SHORT_BATCH_RUN_S = 0.002


class BatchRunTimes:
    """Seconds per padded row of each signature's last batched run, per servable object
    (a reloaded version starts afresh; a record goes with its servable), measured with
    `clock` (monotonic seconds; tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self._by_servable: weakref.WeakKeyDictionary[Any, dict[str, float]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # WeakKeyDictionary is not safe across threads

    def is_short(self, servable: Any, signature_name: str, rows: int) -> bool:
        """Whether a run of `rows` padded rows is expected within SHORT_BATCH_RUN_S; False
        for a signature without a record (its first run takes the pool)."""
        with self._lock:
            per_row = self._by_servable.get(servable, {}).get(signature_name)
        return per_row is not None and per_row * rows <= SHORT_BATCH_RUN_S

    def record(self, servable: Any, signature_name: str, seconds: float, rows: int) -> None:
        with self._lock:
            self._by_servable.setdefault(servable, {})[signature_name] = seconds / rows


class FromVersion:
    """The type of FROM_VERSION."""

    def __repr__(self) -> str:
        return "FROM_VERSION"


# A model batched with the parameters its loaded version brought (batching_params.pbtxt,
# --enable_per_model_batching_parameters; see batching.version_parameters).
FROM_VERSION = FromVersion()


class BatchingSession:
    """Which models are batched, with which parameters, and the path of a batched request."""

    def __init__(self, scheduler: SharedBatchScheduler) -> None:
        self.scheduler = scheduler
        self._params: dict[str, BatchingParameters | FromVersion] = {}
        self._pool: BatchingParameters | None = None
        self._version_files: dict[ServableId, BatchingParameters] = {}
        self._by_version: dict[ServableId, BatchingParameters] = {}
        self._lock = threading.Lock()
        self.run_times = BatchRunTimes()

    def set_parameters(
        self,
        by_model: Mapping[str, BatchingParameters | FromVersion],
        pool: BatchingParameters | None = None,
    ) -> None:
        """Replaces every model's parameters (absent = not batched; FROM_VERSION = each
        version's own file); applies to the next batch. ``pool``: the server-wide
        parameters, whose thread count and pool name FROM_VERSION models use (as TF
        Serving). The shared thread pool gets the largest num_batch_threads asked for."""
        with self._lock:
            self._params = dict(by_model)
            self._pool = pool
            self._by_version = {i: self._effective(p) for i, p in self._version_files.items()}
        threads = [
            p.num_batch_threads for p in by_model.values() if isinstance(p, BatchingParameters)
        ]
        if pool is not None and FROM_VERSION in by_model.values():
            threads.append(pool.num_batch_threads)
        if threads:
            self.scheduler.set_num_threads(max(threads))

    def set_version_parameters(
        self, servable_id: ServableId, params: BatchingParameters | None
    ) -> None:
        """What a loaded version's batching_params.pbtxt holds (None: it has none)."""
        with self._lock:
            files = dict(self._version_files)
            if params is None:
                files.pop(servable_id, None)
            else:
                files[servable_id] = params
            self._version_files = files
            self._by_version = {i: self._effective(p) for i, p in files.items()}

    def _effective(self, params: BatchingParameters) -> BatchingParameters:
        if self._pool is None:
            return params
        return dataclasses.replace(
            params,
            num_batch_threads=self._pool.num_batch_threads,
            thread_pool_name=self._pool.thread_pool_name,
        )

    def parameters_for(self, servable_id: ServableId) -> BatchingParameters | None:
        """How requests to this version are batched; None: they are not."""
        # No lock: the setters swap in whole new dicts, and reading one reference is
        # atomic; this runs once per request on the event loop.
        params = self._params.get(servable_id.name)
        if isinstance(params, FromVersion):
            return self._by_version.get(servable_id)
        return params

    def submit(
        self,
        servable_id: ServableId,
        servable: BatchableServable,
        signature: BatchableSignature,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        params: BatchingParameters,
        timeout: float | None = None,
    ) -> concurrent.futures.Future[Outputs]:
        """Validates and enqueues one request. Raises what an unbatched run would for bad
        input, InvalidArgument for a task larger than max_batch_size, Unavailable when the
        queue is full."""
        feeds = signature.validate_inputs(inputs)
        aliases = signature.validate_output_filter(output_filter)
        named = dict(zip(signature.inputs, feeds, strict=True))
        size = tensors.task_size(named)
        task = BatchTask(
            named,
            size,
            shape_key=tensors.shape_key(
                named, pad_variable_length=params.pad_variable_length_inputs
            ),
            output_aliases=aliases,
            deadline=None if timeout is None else time.monotonic() + timeout,
        )
        key = (servable_id.name, servable_id.version, signature.name)
        processor = functools.partial(_process, self.run_times, servable, signature)
        return self.scheduler.schedule(key, task, params, processor)


def _process(
    run_times: BatchRunTimes,
    servable: BatchableServable,
    signature: BatchableSignature,
    batch: Batch,
) -> list[Outputs]:
    """Runs one batch: merge, pad, run once (see SHORT_BATCH_RUN_S), check and split the
    outputs."""
    params = batch.params
    model = batch.key[0]
    size = batch.size
    padded = params.pad_to_allowed(size)
    merged = tensors.merge(
        [{alias: s.input(alias) for alias in signature.inputs} for s in batch.slices],
        list(signature.inputs),
        padded_size=padded,
        pad_variable_length=params.pad_variable_length_inputs,
    )
    wanted = [s.task.output_aliases for s in batch.slices]
    union = [alias for alias in signature.outputs if any(alias in w for w in wanted)]
    labelled(metrics.BATCHING_PROCESSED_BATCH_SIZE, model).observe(padded)
    labelled(metrics.BATCHING_PADDING_SIZE, model, str(padded)).observe(padded - size)
    metrics.BATCHING_WRAPPED_RUN_COUNT.inc(model)
    in_caller_thread = run_times.is_short(servable, signature.name, padded)
    started = run_times.clock()
    outputs = servable.run(signature, merged, union, in_caller_thread=in_caller_thread)
    run_times.record(servable, signature.name, run_times.clock() - started, padded)
    return tensors.split(outputs, [s.size for s in batch.slices], wanted, padded_size=padded)
