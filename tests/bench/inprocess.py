"""The limit: a SavedModel run in-process, no server, as servingd runs it.

    python -m tests.bench.inprocess --model-dir DIR --features 784 --batch 1 --duration 3

Loads the version with servingd's own SavedModelLoader (one Session, a cached C++
callable) under the daemon's allocator settings (daemon.heap_reuse) and calls
`SavedModelServable.run` in a loop on one thread, TensorFlow's ops in that thread
(`in_caller_thread`, as servingd's short batched runs; at batch 64 as fast as through TensorFlow's
inter-op threads, and at batch 1 faster: the stricter limit); prints one JSON object with
requests (calls), rows/s and per-call latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence

import numpy as np

from servingd.core.ids import ServableId
from servingd.daemon.heap_reuse import apply_allocator_settings
from servingd.servables.saved_model import SavedModelLoader


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.inprocess")
    p.add_argument("--model-dir", required=True, help="a version directory")
    p.add_argument("--features", type=int, required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    args = p.parse_args(argv)
    apply_allocator_settings()  # as servingd's main() makes them
    loader = SavedModelLoader(ServableId("bench", 1), args.model_dir)
    loader.load()
    servable = loader.servable()
    signature = servable.signature("")
    rng = np.random.default_rng(0)
    inputs = {"x": rng.random((args.batch, args.features), dtype=np.float32)}
    end_warmup = time.monotonic() + args.warmup
    while time.monotonic() < end_warmup:
        servable.run(signature, inputs, in_caller_thread=True)
    latencies: list[float] = []
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    stop = start + args.duration
    while (t0 := time.monotonic()) < stop:
        servable.run(signature, inputs, in_caller_thread=True)
        latencies.append(time.monotonic() - t0)
    elapsed = time.monotonic() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    lat = np.array(latencies) * 1000
    result = {
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        "rows_per_s": len(latencies) * args.batch / elapsed,
        "cpu_s": cpu,
        "duration_s": elapsed,
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
        },
    }
    loader.unload()
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
