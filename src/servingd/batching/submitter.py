"""The batch submitter: one request in, one task of the shared scheduler out.

It validates the request the way an unbatched run would (so a bad request fails alone,
with the same message), builds its `BatchTask` and enqueues it on the queue of its
(model, version, signature); the Future completes once the batch that holds it has run.
The servable and signature travel with the queue's processor (`batch_processor`), so a
batch never mixes versions. Callers keep their servable handle until the Future is done.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from servingd.batching import tensors
from servingd.batching.batch_processor import process_batch
from servingd.batching.parameters import BatchingParameters
from servingd.batching.run_times import BatchRunTimes
from servingd.batching.scheduler import BatchTask, Outputs, SharedBatchScheduler
from servingd.core.ids import ServableId
from servingd.servables.servable import Servable
from servingd.servables.signatures import Signature


class BatchSubmitter:
    """Puts requests on the shared scheduler's queues; `run_times` is the processors' cache."""

    def __init__(
        self, scheduler: SharedBatchScheduler, run_times: BatchRunTimes | None = None
    ) -> None:
        self.scheduler = scheduler
        self.run_times = run_times or BatchRunTimes()

    def submit(
        self,
        servable_id: ServableId,
        servable: Servable,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        params: BatchingParameters,
        timeout: float | None = None,
        finish: Callable[[Outputs], Any] | None = None,
    ) -> concurrent.futures.Future[Any]:
        """Validates and enqueues one request; its Future holds `finish(outputs)` (the
        outputs when None). Raises what an unbatched run would for bad input,
        InvalidArgument for a task larger than max_batch_size, Unavailable when the queue
        is full."""
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
            finish=finish,
        )
        key = (servable_id.name, servable_id.version, signature.name)
        processor = functools.partial(process_batch, self.run_times, servable, signature)
        return self.scheduler.schedule(key, task, params, processor)
