"""heap_reuse's allocator settings against none, in-process, interleaved.

    python -m tests.bench.allocator [--models mobilenet_v2,text_encoder] [--batch 8]
        [--rounds 3] [--duration 4] [--settings none,keep_freed_heap,tensors_from_malloc]

The settings are process-wide (glibc's thresholds, TensorFlow's allocator read once), so
each measurement is its own process (tests/bench/inprocess.py). Every round runs every
(model, setting) once, the settings in a rotated order, so a drifting machine's speed falls
on all of them alike; for each model and setting it prints the rows/s of each round and the
median ratio to `none` over the rounds (each round's ratio taken within the round).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("bench.allocator")


def measure(model: str, model_dir: Path, batch: int, setting: str, duration: float) -> float:
    cmd = [
        sys.executable,
        "-m",
        "tests.bench.inprocess",
        f"--model-dir={model_dir}",
        f"--model={model}",
        f"--batch={batch}",
        f"--duration={duration}",
        f"--allocator={setting}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(ROOT)))}
    env.pop("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", None)
    out = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rows_per_s"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.allocator")
    p.add_argument("--models", default="mobilenet_v2,text_encoder")
    p.add_argument("--settings", default="none,keep_freed_heap,tensors_from_malloc")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from servingd.tools.export_models import EXPORTERS

    models, settings = args.models.split(","), args.settings.split(",")
    rows: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="servingd-allocator-") as tmp:
        dirs = {m: EXPORTERS[m](Path(tmp) / m / "1") for m in models}
        for r in range(args.rounds):
            for model in models:
                order = settings[r % len(settings) :] + settings[: r % len(settings)]
                for setting in order:
                    value = measure(model, dirs[model], args.batch, setting, args.duration)
                    rows.setdefault((model, setting), []).append(value)
                    log.info("round %d %s %s: %.1f rows/s", r + 1, model, setting, value)
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
