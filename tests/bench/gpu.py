"""`make bench-gpu`: MobileNetV2 and ResNet-50 on a GPU, servingd with batching against the
same model in-process, in one call of a few minutes.

    python -m tests.bench.gpu [--clients 32] [--pairs 3] [--duration 3]

Without a GPU (nvidia-smi lists none) it prints "skipped: no GPU" and exits 0. With one, the
TensorFlow of this interpreter must see it (a tensorflow-cpu build cannot: it says so and
exits 1). Both models (random weights, servingd.tools.edge_models) are exported once, then:
one in-process process per model (servingd's loader, tests/bench/inprocess.py) and one
servingd with batching serving both, each growing its GPU memory as it needs it. After one
warm-up measurement of each it checks that each of those processes holds GPU memory
(nvidia-smi's per-process list; where a container hides it, that the GPUs' memory in use
grew), i.e. that TensorFlow placed the models on the GPU; a process without any is an
error. Then per model: h2load at `--clients`
gRPC clients against the daemon and the in-process run at the batch size the scheduler
formed, back to back, `--pairs` times, the order alternating; the value is the median of the
pairs' ratios (served rows/s over in-process rows/s). Results: stdout and
build/bench/gpu.md, build/bench/gpu.json.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from tests.bench import models as bench_models  # noqa: E402
from tests.bench import procs, report, run, targets  # noqa: E402
from tests.bench.inprocess_workers import InProcessWorkers  # noqa: E402

log = logging.getLogger("bench.gpu")
MODELS = ("mobilenet_v2", "resnet50")
BATCHING = """\
max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 }
"""


def gpus() -> list[str]:
    """The GPUs nvidia-smi lists (none without the tool or a driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
    return [line for line in done.stdout.splitlines() if line.startswith("GPU")]


def tensorflow_gpus() -> int:
    script = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0


def _smi(*query: str) -> list[str]:
    done = subprocess.run(
        ["nvidia-smi", *query, "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if line.strip()]


def gpu_memory_by_pid() -> dict[int, int]:
    """MiB of GPU memory each process holds, from nvidia-smi (empty where its PIDs are not
    this PID namespace's, as in some containers)."""
    out = {}
    for line in _smi("--query-compute-apps=pid,used_memory"):
        pid, _, mib = line.partition(",")
        with contextlib.suppress(ValueError):
            out[int(pid)] = int(mib)
    return out


def gpu_memory_used() -> int:
    """MiB in use on all GPUs together."""
    return sum(int(line) for line in _smi("--query-gpu=memory.used"))


def check_placement(processes: dict[str, int], used_before: int) -> list[str]:
    """Which of `processes` (name -> pid) hold no GPU memory (their models left on the
    CPU); where nvidia-smi shows no process at all, whether the GPUs' memory in use grew
    since `used_before` (all of them at once, then)."""
    held = gpu_memory_by_pid()
    if not held:
        grown = gpu_memory_used() - used_before
        print(f"nvidia-smi shows no processes here: GPU memory in use grew by {grown} MiB")
        return [] if grown > 0 else list(processes)
    for name, pid in processes.items():
        print(f"{name} (pid {pid}): {held.get(pid, 0)} MiB of GPU memory")
    return [name for name, pid in processes.items() if held.get(pid, 0) <= 0]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.gpu")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=run.BENCH_OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    procs.exit_on_sigterm()  # stopped by PID: still stop the daemons started
    found = gpus()
    if not found:
        print("skipped: no GPU (nvidia-smi lists none)")
        return 0
    print("GPUs: " + "; ".join(found))
    if tensorflow_gpus() == 0:
        print(
            "error: a GPU is here but this interpreter's TensorFlow sees none (a CPU-only "
            "build such as tensorflow-cpu?): run with a TensorFlow built for CUDA"
        )
        return 1
    started = time.monotonic()
    models = run.export_edge_models(args.out, MODELS)
    goals: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="servingd-bench-gpu-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        requests = {m: work / f"grpc-{m}.bin" for m in MODELS}
        for m, path in requests.items():
            path.write_bytes(bench_models.grpc_request(bench_models.EVERY_MODEL[m]))
        params = work / "batching.pbtxt"
        params.write_text(BATCHING)
        monitoring = work / "monitoring.config"
        monitoring.write_text(f'prometheus_config {{ enable: true path: "{run.METRICS_PATH}" }}\n')
        config = run.model_config(work, models, {m: m for m in MODELS})
        flags = (
            f"--model_config_file={config}",
            f"--monitoring_config_file={monitoring}",
            "--enable_batching",
            f"--batching_parameters_file={params}",
            "--file_system_poll_wait_seconds=0",
        )

        def loads(server: Any) -> list[run.Load]:
            return [
                run.Load(f"gRPC {m}", args.clients, requests[m], grpc=server.grpc_target)
                for m in MODELS
            ]

        used_before = gpu_memory_used()
        server, stop = run.start_servingd(flags, loads, targets.ON)
        stack.callback(stop)
        workers = InProcessWorkers(models)
        stack.callback(workers.stop)
        workers.start()
        formed = {}
        for load in server.loads:  # warms both up and finds the batch the scheduler forms
            model = load.label.removeprefix("gRPC ")
            formed[model] = targets.formed_batch(run.measure(server, load, args, targets.ON))
            workers.point(model, formed[model] or 1, args.duration, args.warmup)
        on_cpu = check_placement({"servingd": server.pid, **workers.pids()}, used_before)
        if on_cpu:
            print(f"error: no GPU memory held by {', '.join(on_cpu)}: models not on the GPU")
            return 1
        for load in server.loads:
            model = load.label.removeprefix("gRPC ")
            batch = formed[model] or 1
            ratios = []
            for i in range(args.pairs):
                if i % 2 == 0:
                    a = run.measure(server, load, args, targets.ON)
                    b = workers.point(model, batch, args.duration, args.warmup)
                else:
                    b = workers.point(model, batch, args.duration, args.warmup)
                    a = run.measure(server, load, args, targets.ON)
                results += [a, b]
                ratios.append((targets.rows_per_s(a) or 0.0) / (targets.rows_per_s(b) or 1.0))
            value = statistics.median(ratios)
            goals.append(
                {
                    "target": f"{model}, GPU, gRPC {args.clients} clients, batching on / "
                    f"in-process at the formed batch ({batch})",
                    "value": value,
                    "pairs": ratios,
                    "from_medians": None,
                    "goal": ">= 0.9",
                    "met": value >= 0.9,
                    "bound": None,
                }
            )
    machine = {"gpus": "; ".join(found), **run._versions()}
    notes = [
        "batching parameters: " + " ".join(BATCHING.split()),
        f"whole run: {time.monotonic() - started:.0f} s",
    ]
    report.write(args.out, "gpu", machine, results, goals, {}, notes)
    sys.stdout.write(report.markdown(machine, results, goals, {}, notes) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    # Three processes share the GPU: each takes memory as it needs it, not all at once.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    sys.exit(main())
