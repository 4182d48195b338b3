"""The batch processor: runs one formed batch on its servable and splits the outputs back.

The scheduler calls it on a batch thread with the tasks of one queue (one model, version
and signature): their inputs are merged and padded to an allowed batch size, the servable
runs once (on the batch thread when the run-time cache expects it to be short, see
`run_times`), and each task gets its own rows of the outputs it asked for. A batched run
has no TensorFlow deadline: its tasks' deadlines are checked when the batch forms. Once
every task of a running batch is cancelled (its clients gone, or their deadlines passed),
the run is stopped where the runtime can stop it: it serves nobody.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from servingd.batching import metrics, tensors
from servingd.batching.run_times import BatchRunTimes
from servingd.batching.scheduler import Batch, Outputs
from servingd.core.cancellation import CancelToken, running_with
from servingd.core.metrics import labelled
from servingd.servables.servable import Servable
from servingd.servables.signatures import Signature


def process_batch(
    run_times: BatchRunTimes, servable: Servable, signature: Signature, batch: Batch
) -> list[Outputs]:
    """Runs one batch: merge, pad, run once, check and split the outputs."""
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
    with _stopped_when_abandoned(batch) as token:
        outputs = servable.run(signature, merged, union, in_caller_thread=in_caller_thread)
    if not token.cancelled:  # a stopped run says nothing about the run time
        run_times.record(servable, signature.name, run_times.clock() - started, padded)
    return tensors.split(outputs, [s.size for s in batch.slices], wanted, padded_size=padded)


@contextlib.contextmanager
def _stopped_when_abandoned(batch: Batch) -> Iterator[CancelToken]:
    """The batch's run token, cancelled once every task's own token is."""
    token = CancelToken()
    tasks = [piece.task.future.token for piece in batch.slices]

    def check() -> None:
        if all(t.cancelled for t in tasks):
            token.cancel("cancelled")

    for task in tasks:
        task.on_cancel(check)
    try:
        with running_with(token):
            yield token
    finally:
        for task in tasks:
            task.discard(check)
