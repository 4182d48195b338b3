"""The limit: a SavedModel run in-process, no server, with servingd's own loader.

    python -m tests.bench.inprocess --model-dir DIR --model mobilenet_v2 --batch 8 \
        --duration 3 [--callers 1] [--intra-op 0] \
        [--allocator none|keep_freed_heap|tensors_from_malloc|both|daemon]

Loads the version with servingd's SavedModelLoader (one Session, a cached C++ callable) and
calls it in a loop on one thread with `--batch` rows per call (tests/bench/models.py says
what a row is; tabular runs as a batched Classify runs, plan_classify). Half the measured
time the ops run in the calling thread (`in_caller_thread`, as servingd's short batched
runs), half through TensorFlow's inter-op threads (as its longer runs); the faster half is
the limit reported, the other beside it. With `--serve` the model stays loaded and each
line "BATCH DURATION WARMUP [MODE [CALLERS]]" read from stdin is one such measurement
(make bench's in-process points, without a process start and a model load each); MODE
`caller` or `pool` measures only that way, for the whole duration (`both`, the default: as
above); CALLERS threads call at once (default 1: one call at a time), as concurrent requests
run with batching off. `--allocator` makes
heap_reuse's process-wide settings first (default none: the limit has no setting that
could slow it; `daemon`: what the daemon makes). Prints one JSON object: calls/s, rows/s,
per-call latency (ms).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from servingd.core.ids import ServableId
from servingd.daemon import heap_reuse
from servingd.servables.saved_model import SavedModelLoader, SavedModelServable
from servingd.servables.session_options import SessionOptions
from tests.bench.models import EVERY_MODEL

ALLOCATORS = ("none", "keep_freed_heap", "tensors_from_malloc", "both", "daemon")


def make_allocator_settings(choice: str) -> None:
    """heap_reuse's process-wide settings by name (before TensorFlow's first tensor)."""
    if choice == "daemon":
        heap_reuse.apply_allocator_settings()
    if choice in ("keep_freed_heap", "both"):
        heap_reuse.keep_freed_heap()
    if choice in ("tensors_from_malloc", "both"):
        os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "1"  # TensorFlow's, opt-in


def caller(servable: SavedModelServable, model: str, batch: int) -> Callable[[bool], Any]:
    """One call of `batch` rows; its argument: ops in the caller thread."""
    bench_model = EVERY_MODEL[model]
    if bench_model.classify:
        from tensorflow_serving.apis import classification_pb2

        from servingd.servables.tf_example import plan_classify

        request = classification_pb2.ClassificationRequest()
        for example in bench_model.rows(batch):
            request.input.example_list.examples.add().ParseFromString(example)
        plan = plan_classify(servable, request)
        batch = plan.batch_input(servable)  # as a batched Classify runs: by signature alias
        return lambda inline: plan.finish(
            servable.run(
                batch.signature, batch.inputs, batch.output_filter, in_caller_thread=inline
            )
        )
    signature = servable.signature("")
    inputs = {bench_model.input_name: bench_model.rows(batch)}
    return lambda inline: servable.run(signature, inputs, in_caller_thread=inline)


def timed(calls: Sequence[Callable[[bool], Any]], inline: bool, seconds: float) -> dict[str, Any]:
    """Each of `calls` called in a loop on its own thread (one: on this thread)."""
    latencies: list[float] = []
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    stop = start + seconds

    def loop(call: Callable[[bool], Any]) -> None:
        while (t0 := time.monotonic()) < stop:
            call(inline)
            latencies.append(time.monotonic() - t0)  # list.append is atomic

    if len(calls) == 1:
        loop(calls[0])
    else:
        threads = [threading.Thread(target=loop, args=(call,)) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elapsed = time.monotonic() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    lat = np.array(latencies) * 1000
    return {
        "in_caller_thread": inline,
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        "cpu_s": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "duration_s": elapsed,
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.inprocess")
    p.add_argument("--model-dir", required=True, help="a version directory")
    p.add_argument("--model", required=True, choices=sorted(EVERY_MODEL))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--callers", type=int, default=1, help="threads calling at once")
    p.add_argument(
        "--intra-op",
        type=int,
        default=0,
        help="TensorFlow's intra-op threads (0: its default), as the daemon's "
        "--tensorflow_intra_op_parallelism",
    )
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--allocator", choices=ALLOCATORS, default="none")
    p.add_argument("--serve", action="store_true", help="measure per stdin line (see above)")
    args = p.parse_args(argv)
    make_allocator_settings(args.allocator)
    options = SessionOptions(intra_op_parallelism=args.intra_op)
    loader = SavedModelLoader(ServableId("bench", 1), args.model_dir, options)
    loader.load()
    servable = loader.servable()
    if args.serve:
        sys.stdout.write('{"ready": true}\n')
        sys.stdout.flush()
        for line in sys.stdin:
            batch, duration, warmup, *rest = line.split()
            mode = rest[0] if rest else "both"
            callers = int(rest[1]) if len(rest) > 1 else 1
            result = measure(
                servable, args.model, int(batch), float(duration), float(warmup), mode, callers
            )
            sys.stdout.write(json.dumps({**result, "allocator": args.allocator}) + "\n")
            sys.stdout.flush()
    else:
        result = measure(
            servable, args.model, args.batch, args.duration, args.warmup, callers=args.callers
        )
        sys.stdout.write(json.dumps({**result, "allocator": args.allocator}) + "\n")
    loader.unload()
    return 0


MODES = {"caller": True, "pool": False}


def measure(
    servable: SavedModelServable,
    model: str,
    batch: int,
    duration: float,
    warmup: float,
    mode: str = "both",
    callers: int = 1,
) -> dict[str, Any]:
    """Both ways of running `batch` rows for duration / 2 each, the faster one's figures
    (`mode` "both"); or one way (MODES) for the whole duration; `callers` at once."""
    calls = [caller(servable, model, batch) for _ in range(callers)]
    if mode != "both":
        inline = MODES[mode]
        timed(calls, inline, warmup)
        one = timed(calls, inline, duration)
        return {**one, "batch": batch, "rows_per_s": one["throughput_rps"] * batch}
    for inline in (True, False):
        timed(calls, inline, warmup / 2)
    halves = [timed(calls, inline, duration / 2) for inline in (True, False)]
    best = max(halves, key=lambda h: h["throughput_rps"])
    other = halves[1 - halves.index(best)]
    return {
        **best,
        "batch": batch,
        "rows_per_s": best["throughput_rps"] * batch,
        "other_mode_rps": other["throughput_rps"],
    }


if __name__ == "__main__":
    sys.exit(main())
