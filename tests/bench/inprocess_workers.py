"""make bench's in-process limit: one `tests.bench.inprocess --serve` process per model.

Each loads its model once with servingd's loader and no allocator setting (the limit has
nothing that could slow it), then measures on request; a process per model because the
settings TensorFlow reads are process-wide and a model's memory stays with its process.

The first point of a model at a batch size measures both ways of running it (TensorFlow's
ops in the calling thread, or in its inter-op threads) and keeps the faster; every later
point at that batch runs that way for its whole duration. Taking the faster of two noisy
halves at every point would read high by the noise alone: for MobileNetV2 and the text
encoder the two ways are within this box's spread of each other (caller / inter-op, 4
pairs of 2 s at each of their bench batch sizes: 0.86-1.21).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.bench import procs, targets

log = logging.getLogger("bench.inprocess")
ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 300


class InProcessWorkers:
    def __init__(self, models: dict[str, Path], allocator: str = "none") -> None:
        """`models`: name -> base path (version 1 under it), for tests/bench/models.py;
        `allocator`: tests/bench/inprocess.py's --allocator."""
        self._models = models
        self._allocator = allocator
        self._procs: dict[str, subprocess.Popen[str]] = {}
        # (model, batch, callers) -> the faster way found by its first point ("caller" or
        # "pool").
        self._modes: dict[tuple[str, int, int], str] = {}

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Starts every model's process (they load while the caller does other work)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(ROOT)))}
        env.pop("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", None)
        for name, base in self._models.items():
            self._procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.inprocess",
                    f"--model-dir={base / '1'}",
                    f"--model={name}",
                    f"--allocator={self._allocator}",
                    "--serve",
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )

    def wait_ready(self) -> None:
        for name in self._procs:
            self._reply(name)  # {"ready": true} once loaded

    def _reply(self, name: str) -> dict[str, Any]:
        proc = self._procs[name]
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: every measurement has a duration
        if not line:
            raise RuntimeError(f"in-process {name} exited with {proc.wait(READY_TIMEOUT_S)}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def pids(self) -> dict[str, int]:
        return {f"in-process {name}": proc.pid for name, proc in self._procs.items()}

    def point(
        self, model: str, batch: int, duration: float, warmup: float, callers: int = 1
    ) -> dict[str, Any]:
        """`model` at `batch` rows per call, `callers` calling at once, as a load point of
        the results table (targets.in_process_label)."""
        proc = self._procs[model]
        assert proc.stdin is not None
        mode = self._modes.get((model, batch, callers), "both")
        proc.stdin.write(f"{batch} {duration} {warmup} {mode} {callers}\n")
        proc.stdin.flush()
        r = self._reply(model)
        chosen = "caller" if r["in_caller_thread"] else "pool"
        self._modes.setdefault((model, batch, callers), chosen)
        label = targets.in_process_label(model, batch, callers)
        log.info(
            "in-process %s: %.1f rows/s, p50 %.3f ms (%s%s)",
            label,
            r["rows_per_s"],
            r["latency_ms"]["p50"],
            chosen,
            ", the faster of both" if mode == "both" else "",
        )
        return {
            "scenario": targets.IN_PROCESS,
            "load": label,
            "clients": 1,
            "throughput_rps": r["throughput_rps"],
            "rows_per_s": r["rows_per_s"],
            "latency_ms": r["latency_ms"],
            "errors": {},
            "server_cpu_cores": r["cpu_s"] / r["duration_s"],
            "in_caller_thread": r["in_caller_thread"],
        }

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                procs.stop(proc)  # type: ignore[arg-type]
