"""Two servingd builds side by side: the way to measure one change on a box that drifts.

    python -m tests.bench.side_by_side --b-python OTHER/bin/python
    python -m tests.bench.side_by_side --b-src /tmp/old/src        # git worktree of HEAD~1
    python -m tests.bench.side_by_side --b-env TF_ONEDNN_USE_SYSTEM_ALLOCATOR=0 --rounds 8
    python -m tests.bench.side_by_side --b-flag=--compute_thread_nice=10
    python -m tests.bench.side_by_side --b-src /tmp/old/src --protocol rest --rows 64 \
        --modes off --points mlp:16                               # make bench's REST [64,784]
    python -m tests.bench.side_by_side --b-env MALLOC_TOP_PAD_=131072 \
        --points mobilenet_v2:32,text_encoder:32,mobilenet_v2:1   # make bench's edge models

Side A is this interpreter and this tree's `src`; side B differs by its interpreter (another
virtualenv: other dependency versions), its source tree, its environment, or its extra
daemon flags (`--b-flag`). Each side runs one daemon with batching on and one with it off,
all up at once, serving the models its points name (exported once into build/bench/models
and reused, as make bench's are: the MLPs, or make bench's edge models:
mobilenet_v2, text_encoder, jpeg_classifier and tabular, one-row requests, with make
bench's edge batching parameters; `--protocol rest` sends them as TF Serving's JSON, except
tabular, which is gRPC Classify only); then every load point (h2load,
gRPC batch-1 requests by default, 64 and 1 clients; `--protocol rest` sends make bench's
REST JSON bodies instead, `--rows 64` its [64,784] payload) is measured on A and B back to
back, the order alternating per round. Sequential runs of `make bench` on the 2-vCPU bench
box differ by up to 2-3x within minutes (CPU steal); a pair taken a few seconds apart shares
the drift, so the median of the per-round ratios B/A is the number to quote (with its
pairs). Calibration, A/A (both sides this tree, B with a dummy variable; batching on, 6
rounds of 2.5 s): medians 0.95-1.06, single pairs 0.78-1.23. A change shows when its pairs
lie on one side of 1.

A virtualenv for side B that changes only some packages can reuse this one's for the rest:
    python -m venv /tmp/b && /tmp/b/bin/pip install --no-deps grpcio==X ...
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/b/lib/python3.11/site-packages/zz.pth
Not part of `make bench` (it answers "did this change help", not "how fast is servingd").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.servingd_process import ServingdProcess  # noqa: E402
from tests.bench import models as bench_models  # noqa: E402
from tests.bench import procs, run  # noqa: E402
from tests.bench.models import grpc_request  # noqa: E402

log = logging.getLogger("side_by_side")
POINTS = (("mlp", 64), ("mlp", 1), ("half_plus_two", 64), ("half_plus_two", 1))
MODES = ("on", "off")


@dataclass
class Side:
    name: str
    python: str
    src: Path
    env: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"python {self.python}", f"src {self.src}"]
        parts += [f"{k}={v}" for k, v in self.env.items()]
        parts += self.flags
        return ", ".join(parts)


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float


def _env_pairs(items: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--*-env wants KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


# make bench's edge models that side by side serves (tabular through Classify, the others
# through Predict).
EDGE_MODELS = ("mobilenet_v2", "text_encoder", "jpeg_classifier", "tabular")


def _points(text: str) -> tuple[tuple[str, int], ...]:
    points = []
    known = (*run.FEATURES, *EDGE_MODELS)
    for item in text.split(","):
        model, sep, clients = item.partition(":")
        if not sep or model not in known or not clients.isdigit() or int(clients) < 1:
            raise argparse.ArgumentTypeError(f"want MODEL:CLIENTS, MODEL one of {known}")
        points.append((model, int(clients)))
    return tuple(points)


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m for m in text.split(",") if m)
    if not modes or set(modes) - set(MODES):
        raise argparse.ArgumentTypeError(f"want batching modes from {','.join(MODES)}")
    return modes


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Side, Side]:
    p = argparse.ArgumentParser(prog="python -m tests.bench.side_by_side")
    for side in ("a", "b"):
        p.add_argument(f"--{side}-python", default=sys.executable)
        p.add_argument(f"--{side}-src", type=Path, default=ROOT / "src")
        p.add_argument(f"--{side}-env", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument(
            f"--{side}-flag",
            action="append",
            default=[],
            metavar="FLAG",
            help=f"a daemon flag for side {side.upper()}, as --{side}-flag=--name=value",
        )
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per point")
    p.add_argument("--modes", type=_modes, default=MODES, help="batching modes: on,off")
    p.add_argument("--protocol", choices=("grpc", "rest"), default="grpc")
    p.add_argument("--rows", type=int, choices=(1, run.BATCH), default=1, help="rows per request")
    p.add_argument(
        "--points",
        type=_points,
        default=POINTS,
        help=f"MODEL:CLIENTS,... (models: {', '.join((*run.FEATURES, *EDGE_MODELS))})",
    )
    args = p.parse_args(argv)
    edge = {model for model, _ in args.points} & set(EDGE_MODELS)
    if edge and args.rows != 1:
        p.error(f"{', '.join(sorted(edge))}: one-row requests only")
    if "tabular" in edge and args.protocol != "grpc":
        p.error("tabular: gRPC Classify only")
    sides = [
        Side(
            name.upper(),
            getattr(args, f"{name}_python"),
            getattr(args, f"{name}_src").resolve(),
            _env_pairs(getattr(args, f"{name}_env")),
            list(getattr(args, f"{name}_flag")),
        )
        for name in ("a", "b")
    ]
    if sides[0].describe() == sides[1].describe():
        p.error(
            "sides A and B are the same: give B another --b-python, --b-src, --b-env or --b-flag"
        )
    return args, sides[0], sides[1]


def load_for(
    server: ServingdProcess, protocol: str, model: str, body: Path, clients: int
) -> run.Load:
    """make bench's load of `body` on `model`, over gRPC or REST."""
    if protocol == "rest":
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/{model}:predict"
        return run.Load("REST", clients, body, url=url)
    bench_model = bench_models.MODELS.get(model)
    method = bench_model.method if bench_model is not None else run.PREDICT
    return run.Load("gRPC", clients, body, grpc=server.grpc_target, method=method)


def measure(server: ServingdProcess, load: run.Load, reply: int | None, seconds: float) -> Sample:
    """One load point through make bench's own measuring (tests.bench.run.measure); `reply`:
    a gRPC reply's length on the wire (REST: None, each reply's status is checked)."""
    assert server.proc is not None
    load = dataclasses.replace(load, reply_bytes=reply)
    window = argparse.Namespace(warmup=0.5, duration=seconds)
    result = run.measure(run.Server("servingd", server.proc.pid, []), load, window, "side by side")
    if result["errors"] or not result["throughput_rps"]:
        raise RuntimeError(f"{load.grpc or load.url}, {load.clients} clients: {result}")
    latency = result["latency_ms"]
    return Sample(result["throughput_rps"], latency["p50"], latency["p99"])


def main(argv: Sequence[str] | None = None) -> int:
    args, a, b = parse_args(argv)
    modes = args.modes
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    procs.exit_on_sigterm()  # stopped by PID: still stop the daemons started
    models = sorted({model for model, _ in args.points})

    samples: dict[tuple[str, str, int, str], list[Sample]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="servingd-side-by-side-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        model_dirs = run.export_edge_models(run.BENCH_OUT, models)
        bodies = run.write_bodies(work)
        edge = [model for model in models if model in EDGE_MODELS]
        for model in edge:
            bench_model = bench_models.MODELS[model]
            bodies[f"grpc-{model}-1"] = work / f"grpc-{model}-1.bin"
            bodies[f"grpc-{model}-1"].write_bytes(grpc_request(bench_model))
            if not bench_model.classify:
                bodies[f"rest-{model}-1"] = work / f"rest-{model}-1.json"
                bodies[f"rest-{model}-1"].write_bytes(bench_models.rest_request(bench_model))
        params = work / "batching.pbtxt"
        params.write_text(run.EDGE_BATCHING_PARAMETERS if edge else run.BATCHING_PARAMETERS)
        config = run.model_config(work, model_dirs, {m: m for m in models})
        base = [f"--model_config_file={config}", "--file_system_poll_wait_seconds=0"]
        batching = ["--enable_batching", f"--batching_parameters_file={params}"]
        servers: dict[tuple[str, str], ServingdProcess] = {}
        for side in (a, b):
            for mode in modes:
                server = ServingdProcess(
                    base + (batching if mode == "on" else []) + side.flags,
                    command=[side.python, "-m", "servingd.daemon.main"],
                    env={"PYTHONPATH": str(side.src), **side.env},
                )
                stack.callback(server.stop)
                server.start()
                servers[(side.name, mode)] = server
        for server in servers.values():
            server.wait_healthy(300)

        def load(key: tuple[str, str], model: str, clients: int) -> run.Load:
            body = bodies[f"{args.protocol}-{model}-{args.rows}"]
            return load_for(servers[key], args.protocol, model, body, clients)

        # gRPC: each reply's length, which the load generator counts replies by.
        replies = {
            (key, model): run._reply_bytes(load(key, model, 1))
            for key in servers
            for model in models
        }
        for round_ in range(args.rounds):
            order = (a, b) if round_ % 2 == 0 else (b, a)
            for mode in modes:
                for model, clients in args.points:
                    for side in order:
                        key = (side.name, mode)
                        sample = measure(
                            servers[key],
                            load(key, model, clients),
                            replies[(key, model)],
                            args.duration,
                        )
                        samples.setdefault((mode, model, clients, side.name), []).append(sample)
            log.info("round %d of %d done", round_ + 1, args.rounds)
    sys.stdout.write(report(samples, modes, a, b, args))
    return 0


def report(
    samples: dict[tuple[str, str, int, str], list[Sample]],
    modes: Sequence[str],
    a: Side,
    b: Side,
    args: argparse.Namespace,
) -> str:
    lines = [
        f"A: {a.describe()}",
        f"B: {b.describe()}",
        f"{'REST' if args.protocol == 'rest' else 'gRPC'} requests of {args.rows} row(s), "
        f"{args.rounds} alternating rounds of {args.duration:g} s per point",
        "",
        "| batching | model | clients | A req/s | B req/s | B/A pairs | B/A median "
        "| A p50 ms | B p50 ms | A p99 ms | B p99 ms |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for mode in modes:
        for model, clients in args.points:
            sa, sb = samples[(mode, model, clients, "A")], samples[(mode, model, clients, "B")]
            ratios = [y.rps / x.rps for x, y in zip(sa, sb, strict=True)]
            cells = [
                mode,
                model,
                str(clients),
                f"{statistics.median(s.rps for s in sa):.0f}",
                f"{statistics.median(s.rps for s in sb):.0f}",
                ", ".join(f"{r:.2f}" for r in ratios),
                f"{statistics.median(ratios):.2f}",
                f"{statistics.median(s.p50_ms for s in sa):.2f}",
                f"{statistics.median(s.p50_ms for s in sb):.2f}",
                f"{statistics.median(s.p99_ms for s in sa):.2f}",
                f"{statistics.median(s.p99_ms for s in sb):.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
