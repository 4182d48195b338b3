"""heap_reuse's allocator settings against none, in-process, interleaved.

    python -m tests.bench.allocator [--models mobilenet_v2,text_encoder] [--batch 8]
        [--rounds 6] [--duration 2] [--settings none,keep_freed_heap,tensors_from_malloc]

The settings are process-wide (glibc's thresholds, TensorFlow's allocator read once), so
each (model, setting) is its own process (tests/bench/inprocess.py --serve), all loaded at
once. Every round measures each of them for `--duration` seconds, one after the other, the
settings in a rotated order, so a drifting machine's speed falls on all of them alike
within seconds; for each model and setting it prints the rows/s of each round and the
median ratio to `none` over the rounds (each round's ratio taken within the round).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from tests.bench.inprocess_workers import InProcessWorkers

log = logging.getLogger("bench.allocator")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.allocator")
    p.add_argument("--models", default="mobilenet_v2,text_encoder")
    p.add_argument("--settings", default="none,keep_freed_heap,tensors_from_malloc")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=2.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from servingd.tools.export_models import EXPORTERS

    models, settings = args.models.split(","), args.settings.split(",")
    rows: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="servingd-allocator-") as tmp, ExitStack() as stack:
        dirs = {m: EXPORTERS[m](Path(tmp) / m / "1").parent for m in models}
        workers = {s: InProcessWorkers(dirs, allocator=s) for s in settings}
        for pool in workers.values():
            stack.callback(pool.stop)
            pool.start()
        for r in range(args.rounds):
            for model in models:
                order = settings[r % len(settings) :] + settings[: r % len(settings)]
                for setting in order:
                    point = workers[setting].point(model, args.batch, args.duration, 0.5)
                    rows.setdefault((model, setting), []).append(point["rows_per_s"])
                    log.info(
                        "round %d %s %s: %.1f rows/s", r + 1, model, setting, point["rows_per_s"]
                    )
    print(f"| model, batch {args.batch} | setting | rows/s per round | / none (median) |")
    print("|---|---|---|---:|")
    for (model, setting), values in rows.items():
        base = rows[(model, "none")]
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        per_round = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {model} | {setting} | {per_round} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
