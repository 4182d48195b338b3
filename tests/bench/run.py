"""`make bench`: servingd against the limit and against its peer, in one run, as ratios.

The models (tests/bench/models.py, servingd.tools.edge_models, random weights): MobileNetV2,
a small text encoder, a tabular wide-and-deep model served through Classify, a model that
decodes JPEG bytes in its graph, and half_plus_two. Exported once into build/bench/models/.

Servers (each its own process, started and stopped by PID, on 127.0.0.1 only):
- servingd with batching on, and off, serving all five from one model config file;
- the peer: Seldon MLServer (its own virtualenv under build/bench/, installed on first use
  and cached) with a minimal custom runtime over MobileNetV2 and the text encoder;
- the diagnostic's two: a bare grpc.aio server returning a canned reply (the transport
  ceiling, tests/bench/echo_server.py) and servingd whose Predict returns a canned reply
  before any of its work (tests/bench/ablation.py, step canned);
- servingd answering after all its work up to the run, batching off (ablation step
  bridge): the floor of the p50 targets;
- nghttpd (a C HTTP/2 server): the load generator's own ceiling.
The limit: each model run in-process with servingd's loader and no allocator setting
(tests/bench/inprocess.py, one process per model, kept loaded), at batch 1 and at the
batch sizes the scheduler formed; with MLServer, also at batch 1 from 8 threads at once.

Load: h2load (tests/bench/loadgen.py), closed-loop clients sending one-row requests,
pre-serialized. For every load point: throughput, p50/p99 latency, server CPU (cores busy)
and RSS, load generator CPU, rows per batch. Then each target's two load points back to back,
a few times (tests/bench/targets.py: the median of those pairs is the target's value), then
startup to READY with 10 models, a reload of the unchanged config, and RSS per MLP. Last,
the TF Lite section: a CNN as SavedModel, TF Lite float32 and int8 (tests/bench/tflite_cnn.py).

Results: the target table first, then the load points, on stdout, build/bench/bench.json
and build/bench/bench.md.
    python -m tests.bench.run [--quick] [--rounds 2] [--pairs 3] [--duration 2]
        [--skip-mlserver] [--skip-tflite] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BENCH_OUT = ROOT / "build" / "bench"  # results, and the exported models reused between runs
sys.path.insert(0, str(ROOT / "tests"))

from support.servingd_process import ServingdProcess, free_port  # noqa: E402
from tests.bench import loadgen, procs, report, targets, tflite_cnn  # noqa: E402
from tests.bench import models as bench_models  # noqa: E402
from tests.bench.inprocess_workers import InProcessWorkers  # noqa: E402
from tests.bench.mlserver import setup as mlserver_setup  # noqa: E402

log = logging.getLogger("bench")
# Each target's back-to-back measurements of two points, by target name.
Pairs = dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]

PY = sys.executable
# servingd's sources and this tests tree, for a daemon run as `python -m tests.bench...`.
TREE_PYTHONPATH = os.pathsep.join((str(ROOT / "src"), str(ROOT)))
# The MLP benchmark's parameters and bodies (tests.bench.side_by_side, tests.bench.ablation,
# and the diagnostic's canned reply). BATCH: max_batch_size and the large payload's rows.
BATCH = 64
# batch_timeout_micros 0: a batch closes as soon as the batch thread is free and takes what
# has queued meanwhile. Measured on the 2-core box (MLP, 64 gRPC clients, h2load): 1,620-1,730
# req/s and p50 1.17 ms at 1 client, against 1,370-1,380 req/s and 2.77 ms with 1000 us; two
# batch threads: 750-1,120 req/s (they contend with the event loop for the GIL and 2 cores).
BATCHING_PARAMETERS = f"""\
max_batch_size {{ value: {BATCH} }}
batch_timeout_micros {{ value: 0 }}
max_enqueued_batches {{ value: 100 }}
num_batch_threads {{ value: 1 }}
"""
# The edge models' batching (make bench): up to 16 rows per run, a batch closing 2 ms after
# its first request unless full, one batch thread (TensorFlow's intra-op threads use the
# cores; the event loop needs the rest).
EDGE_BATCHING_PARAMETERS = """\
max_batch_size { value: 16 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 1 }
"""
FEATURES = {"mlp": 784, "half_plus_two": 1, "wide_mlp": 784}
PREDICT = "/tensorflow.serving.PredictionService/Predict"
METRICS_PATH = "/monitoring/prometheus/metrics"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
# The TF Lite section: about 25 s for its three daemons.
TFLITE_SECONDS = 3.0
TFLITE_INTERPRETERS = 2
V2_INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Load:
    """One load point against a running server."""

    label: str  # e.g. "gRPC mlp"
    clients: int
    body: Path
    grpc: str | None = None  # HOST:PORT, or
    url: str | None = None
    method: str = PREDICT
    reply_bytes: int | None = None  # known reply length (else fetched by a real client)


@dataclass
class Server:
    name: str
    pid: int
    loads: list[Load]
    metrics_url: str | None = None  # servingd's Prometheus page: batch sizes per load point


# -- request bodies (serialized once, sent as bytes by the load generator) -------------------


def _inputs(rows: int, features: int) -> np.ndarray:
    return np.random.default_rng(rows * 1000 + features).random((rows, features), np.float32)


def write_bodies(work: Path) -> dict[str, Path]:
    from tensorflow_serving.apis import predict_pb2

    bodies: dict[str, Path] = {}
    for model, features in FEATURES.items():
        for rows in (1, BATCH):
            x = _inputs(rows, features)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            tensor = request.inputs["x"]
            tensor.dtype = 1  # DT_FLOAT
            tensor.tensor_shape.dim.add().size = rows
            tensor.tensor_shape.dim.add().size = features
            tensor.tensor_content = x.tobytes()
            key = f"{model}-{rows}"
            bodies[f"grpc-{key}"] = work / f"grpc-{key}.bin"
            bodies[f"grpc-{key}"].write_bytes(request.SerializeToString())
            bodies[f"rest-{key}"] = work / f"rest-{key}.json"
            bodies[f"rest-{key}"].write_text(json.dumps({"instances": x.tolist()}))
            v2 = {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [rows, features],
                        "datatype": "FP32",
                        "data": x.ravel().tolist(),
                    }
                ]
            }
            bodies[f"v2rest-{key}"] = work / f"v2rest-{key}.json"
            bodies[f"v2rest-{key}"].write_text(json.dumps(v2))
    return bodies


# -- measuring ---------------------------------------------------------------------------


def _reply_bytes(load: Load) -> int | None:
    """Sends the load's request once through a real client and checks the reply.

    gRPC: returns the length of the reply as framed on the wire, which every reply to this
    same request must carry (the load generator counts replies by it). REST: None, after
    checking HTTP 200.
    """
    body = load.body.read_bytes()
    if load.grpc:
        import grpc

        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        with grpc.insecure_channel(load.grpc, options=options) as channel:
            reply = channel.unary_unary(load.method)(body, timeout=60)
        return len(loadgen.grpc_frame(reply))
    assert load.url is not None
    request = urllib.request.Request(
        load.url, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        if response.status != 200:
            raise AssertionError(f"{load.url}: HTTP {response.status}")
    return None


def measure(server: Server, load: Load, args: argparse.Namespace, scenario: str) -> dict[str, Any]:
    """Runs `load` with h2load for warm-up + duration; the server's CPU over the window."""
    reply_bytes = load.reply_bytes if load.reply_bytes is not None else _reply_bytes(load)
    running = loadgen.start(
        url=f"http://{load.grpc}{load.method}" if load.grpc else str(load.url),
        body=load.body.read_bytes(),
        clients=load.clients,
        seconds=args.warmup + args.duration,
        grpc=load.grpc is not None,
    )
    window = (running.started + args.warmup, running.started + args.warmup + args.duration)
    time.sleep(max(0.0, window[0] - time.time()))
    cpu0 = procs.cpu_seconds(server.pid)
    batches0 = batch_counts(server.metrics_url)
    time.sleep(max(0.0, window[1] - time.time()))
    cpu1 = procs.cpu_seconds(server.pid)
    batches1 = batch_counts(server.metrics_url)
    rss = procs.rss_mib(server.pid)
    done = loadgen.finish(running, window, reply_bytes)
    latencies = done.latencies_ms
    ok = latencies.size > 0
    result = {
        "scenario": scenario,
        "load": load.label,
        "clients": load.clients,
        "throughput_rps": done.requests / args.duration,
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50)) if ok else float("nan"),
            "p99": float(np.percentile(latencies, 99)) if ok else float("nan"),
        },
        "errors": done.errors,
        "server_cpu_cores": (cpu1 - cpu0) / args.duration,
        "server_rss_mib": rss,
        "loadgen_cpu_cores": done.cpu_s / done.run_s if done.run_s else float("nan"),
    }
    if batches0 is not None and batches1 is not None and batches1[1] > batches0[1]:
        result["rows_per_batch"] = (batches1[0] - batches0[0]) / (batches1[1] - batches0[1])
    log.info(
        "%-28s %-22s c=%-3d %7.0f req/s p50 %7.2f ms p99 %7.2f ms cpu %.2f rss %.0f MiB %s",
        scenario,
        load.label,
        load.clients,
        result["throughput_rps"],
        result["latency_ms"]["p50"],
        result["latency_ms"]["p99"],
        result["server_cpu_cores"],
        rss,
        done.errors or "",
    )
    return result


def batch_counts(metrics_url: str | None) -> tuple[float, float] | None:
    """(rows, batches) the batch scheduler has run so far, all models together, from
    TF Serving's processed_batch_size histogram (padded rows; none is padded here)."""
    if metrics_url is None:
        return None
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        for kind in totals:
            if name.startswith(f"{PROCESSED_BATCH_SIZE}_{kind}{{"):
                totals[kind] += float(value)
    return totals["sum"], totals["count"]


def run_rounds(
    starters: Sequence[tuple[str, Callable[[], tuple[Server, Callable[[], None]]]]],
    workers: InProcessWorkers | None,
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], Pairs, Pairs]:
    """Starts every server, runs every load point once per round, round after round, then
    the in-process points (batch 1, and each batch the scheduler formed this round), then
    the targets' pairs and the front-end bounds' pairs (see tests/bench/targets.py);
    returns the points and both sets of pairs.

    The machine's speed drifts (other tenants, CPU steal): interleaving puts every scenario
    under the same drift, and each point reports the median of its rounds.
    """
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        servers = start_all(starters, stack)
        if workers is not None:
            workers.wait_ready()
        for round_ in range(args.rounds):
            log.info("round %d of %d", round_ + 1, args.rounds)
            points: list[dict[str, Any]] = []
            for name, server in servers.items():
                points += [measure(server, load, args, name) for load in server.loads]
            if workers is not None:
                points += [
                    inprocess_point(workers, label, args) for label in inprocess_labels(points)
                ]
            for point in points:
                runs.setdefault((point["scenario"], point["load"], point["clients"]), []).append(
                    point
                )
        results = [median_of(points) for points in runs.values()]
        if workers is not None:
            results += missing_inprocess_points(workers, results, args)
        pairs = run_pairs(servers, workers, results, args)
        front_end = front_end_pairs(servers, workers, results, args)
    return results, pairs, front_end


def start_all(
    starters: Sequence[tuple[str, Callable[[], tuple[Server, Callable[[], None]]]]],
    stack: contextlib.ExitStack,
) -> dict[str, Server]:
    """Starts the servers at once (most of a start is waiting for TensorFlow's import and
    the model loads); each one started is stopped by `stack`, even if another fails."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(starters))) as pool:
        futures = {name: pool.submit(start) for name, start in starters}
        log.info("starting servers: %s", ", ".join(futures))
        concurrent.futures.wait(futures.values())
    servers: dict[str, Server] = {}
    for name, future in futures.items():
        if future.exception() is None:
            server, stop = future.result()
            stack.callback(stop)
            servers[name] = server
    for future in futures.values():
        future.result()  # the first failure, once every started server will be stopped
    return servers


def inprocess_labels(points: Sequence[dict[str, Any]]) -> list[str]:
    """The in-process points a round needs: every model at batch 1, and each target's
    formed batch as `points` show it."""
    labels = [f"{model} batch 1" for model in bench_models.MODELS]
    for target in targets.all_targets():
        resolved = target.resolve(points)
        if resolved is not None and resolved.second[0] == targets.IN_PROCESS:
            label = resolved.second[1]
            if label not in labels:
                labels.append(label)
    return labels


def bound_inprocess_labels(points: Sequence[dict[str, Any]]) -> list[str]:
    """The in-process points only a bound reads (servingd / MLServer's: the model at batch 1
    with 8 callers), for the targets whose other point `points` has."""
    labels = []
    for target in targets.all_targets():
        bound = target.bound
        if bound is None or bound.over[0] != targets.IN_PROCESS or bound.under is None:
            continue
        if targets.find(points, bound.under) is not None and bound.over[1] not in labels:
            labels.append(bound.over[1])
    return labels


def missing_inprocess_points(
    workers: InProcessWorkers, results: Sequence[dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The in-process points at the batches the rounds' medians formed that no round
    measured (batches of 4 and 6 rows in two rounds: a median of 5), and those only a bound
    reads, one each, so that every target has its table value and its bounds."""
    measured = {r["load"] for r in results if r["scenario"] == targets.IN_PROCESS}
    wanted = inprocess_labels(results) + bound_inprocess_labels(results)
    missing = [label for label in dict.fromkeys(wanted) if label not in measured]
    return [median_of([inprocess_point(workers, label, args)]) for label in missing]


def inprocess_point(
    workers: InProcessWorkers, label: str, args: argparse.Namespace
) -> dict[str, Any]:
    model, batch, callers = targets.parse_in_process_label(label)
    return workers.point(model, batch, args.duration, args.warmup, callers)


def run_pairs(
    servers: dict[str, Server],
    workers: InProcessWorkers | None,
    results: Sequence[dict[str, Any]],
    args: argparse.Namespace,
) -> Pairs:
    """Each target's two points measured back to back, `args.pairs` times, the order
    alternating (so that a steady drift favours neither); targets whose points are not
    running here, and the diagnostic, are left out. An in-process point at the formed batch
    uses the batch of the rounds' medians (`results`)."""

    def runner(key: targets.PointKey) -> Callable[[], dict[str, Any]] | None:
        scenario, label, clients = key
        if scenario == targets.IN_PROCESS:
            if workers is None:
                return None
            return functools.partial(inprocess_point, workers, label, args)
        server = servers.get(scenario)
        load = None if server is None else find_load(server, label, clients)
        if server is None or load is None:
            return None
        return functools.partial(measure, server, load, args, scenario)

    out: Pairs = {}
    for unresolved in targets.all_targets() if args.pairs > 0 else ():
        target = unresolved.resolve(results)
        if target is None or target.goal is None:  # a diagnostic: the table's medians
            continue
        first, second = runner(target.first), runner(target.second)
        if first is None or second is None:
            continue
        log.info("pairs: %s", target.name)
        out[target.name] = back_to_back(first, second, args.pairs, target.value)
    return out


def find_load(server: Server, label: str, clients: int) -> Load | None:
    """The server's load point with this label and number of clients."""
    return next((x for x in server.loads if (x.label, x.clients) == (label, clients)), None)


def back_to_back(
    first: Callable[[], dict[str, Any]],
    second: Callable[[], dict[str, Any]],
    count: int,
    value: Callable[[dict[str, Any], dict[str, Any]], float | None],
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`count` pairs of the two points measured one after the other, the order alternating
    (so that a steady drift favours neither); each pair's `value` is logged."""
    pairs = []
    for i in range(count):
        if i % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        pairs.append((a, b))
        log.info("pair %d: %s", i + 1, value(a, b))
    return pairs


# The canned daemon's load beside a FRONT_END point: one HTTP/2 connection, this many
# streams, paced at the goal's rate; it starts this long before the in-process point and
# runs this long past it.
FRONT_END_STREAMS = 32
FRONT_END_LEAD_S = 0.3
FRONT_END_TAIL_S = 0.2


def front_end_pairs(
    servers: dict[str, Server],
    workers: InProcessWorkers | None,
    results: Sequence[dict[str, Any]],
    args: argparse.Namespace,
) -> Pairs:
    """Each FRONT_END bound's (alone, beside) in-process pairs, `args.pairs` of them, the
    order alternating: the model at the formed batch alone, and while the canned daemon
    answers the model's own requests at the goal's rate (see tests/bench/targets.py). A
    target whose rate is over what the canned daemon answered at full load, or that a bound
    from the table already puts out of reach, is left out."""
    canned = servers.get(targets.CANNED)
    served = servers.get(targets.ON)
    canned_point = targets.find(results, targets.CANNED_POINT)
    if workers is None or canned is None or served is None or canned_point is None:
        return {}
    out: Pairs = {}
    for unresolved in targets.all_targets() if args.pairs > 0 else ():
        target = unresolved.resolve(results)
        rate = None if target is None else targets.front_end_rate(target, results)
        if target is None or rate is None or rate > canned_point["throughput_rps"]:
            continue
        if target.met(target.best_possible(results)) is False:
            continue  # already out of reach by a bound from the table
        load = find_load(served, *target.first[1:])
        limit = target.front_end_limit
        if load is None or limit is None:
            continue
        in_process = limit[1]
        log.info("front-end bound: %s, canned replies at %.0f req/s", target.name, rate)
        alone = functools.partial(inprocess_point, workers, in_process, args)
        beside = functools.partial(
            _beside_canned, canned.loads[0].grpc or "", load, rate, workers, in_process, args
        )
        out[target.name] = back_to_back(
            alone, beside, args.pairs, lambda a, b: targets.front_end_value([(a, b)])
        )
    return out


def _beside_canned(
    canned: str,
    load: Load,
    rate: float,
    workers: InProcessWorkers,
    label: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The in-process point `label` while the canned daemon answers `load`'s requests at
    `rate`; the rate the canned daemon kept is logged."""
    seconds = FRONT_END_LEAD_S + args.warmup + args.duration + FRONT_END_TAIL_S
    running = loadgen.start(
        url=f"http://{canned}{load.method}",
        body=load.body.read_bytes(),
        clients=FRONT_END_STREAMS,
        seconds=seconds,
        grpc=True,
        rate=rate,
    )
    time.sleep(FRONT_END_LEAD_S)
    begin = time.time()
    point = inprocess_point(workers, label, args)
    window = (begin, time.time())
    done = loadgen.finish(running, window, None)
    log.info(
        "beside: canned replies at %.0f req/s, errors %s",
        done.requests / (window[1] - window[0]),
        done.errors or "none",
    )
    return {**point, "scenario": targets.FRONT_END}


def median_of(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One load point over its rounds: medians; RSS at its largest; errors added up."""

    def med(values: Sequence[float]) -> float:
        return float(np.median(values)) if values else float("nan")

    first = points[0]
    out = dict(first)
    for field in (
        "throughput_rps",
        "rows_per_s",
        "server_cpu_cores",
        "loadgen_cpu_cores",
        "rows_per_batch",
    ):
        if field in first:
            out[field] = med([p[field] for p in points if field in p])
    out["latency_ms"] = {q: med([p["latency_ms"][q] for p in points]) for q in first["latency_ms"]}
    if "server_rss_mib" in first:
        out["server_rss_mib"] = max(p["server_rss_mib"] for p in points)
    errors: dict[str, int] = {}
    for p in points:
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    out["errors"] = errors
    out["rounds_throughput_rps"] = [round(p["throughput_rps"], 1) for p in points]
    return out


def _wait_grpc(target: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                continue
    raise TimeoutError(f"{target} not ready after {timeout} s")


def model_load(
    server: ServingdProcess, requests: dict[str, Path], model: str, clients: int
) -> Load:
    """`model`'s own one-row gRPC request (Predict, or Classify for tabular) at `clients`."""
    method = bench_models.MODELS[model].method
    body = requests[f"grpc-{model}"]
    return Load(f"gRPC {model}", clients, body, grpc=server.grpc_target, method=method)


def edge_loads(scenario: str) -> Callable[[ServingdProcess, dict[str, Path]], list[Load]]:
    """The load points of the daemon with batching on or off (see targets.all_targets)."""

    def loads(server: ServingdProcess, requests: dict[str, Path]) -> list[Load]:
        def grpc(model: str, clients: int) -> Load:
            return model_load(server, requests, model, clients)

        out = [grpc(m, c) for m in targets.BATCHED_MODELS for c in (8, 32)]
        if scenario == targets.ON:
            rest = f"http://127.0.0.1:{server.rest_port}/v1/models/jpeg_classifier:predict"
            out += [
                grpc("tabular", 32),
                grpc("jpeg_classifier", 8),
                Load("REST jpeg_classifier", 8, requests["rest-jpeg_classifier"], url=rest),
            ]
        else:
            out += [grpc(m, 1) for m in targets.ALL_MODELS]
        return out

    return loads


def canned_loads(server: ServingdProcess, bodies: dict[str, Path]) -> list[Load]:
    """servingd with a canned Predict: the diagnostic's load."""
    _, label, clients = targets.CANNED_POINT
    return [Load(label, clients, bodies["grpc-mlp-1"], grpc=server.grpc_target)]


def round_trip_loads(server: ServingdProcess, requests: dict[str, Path]) -> list[Load]:
    """servingd answering once a request's work up to its run is done: each model's own
    request at 1 client, the floor of its p50 target."""
    return [model_load(server, requests, model, 1) for model in bench_models.MODELS]


# servingd with PredictionService.Predict answering a canned reply (see targets.CANNED).
CANNED_COMMAND = (PY, "-m", "tests.bench.ablation", "serve", "canned", "--")
# servingd answering after the work up to the run (see targets.ROUND_TRIP).
ROUND_TRIP_COMMAND = (PY, "-m", "tests.bench.ablation", "serve", "bridge", "--")


def model_config(work: Path, models: dict[str, Path], names: dict[str, str]) -> Path:
    """A TF Serving ModelServerConfig text proto: name -> base path."""
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{models[kind]}" model_platform: "tensorflow" }}\n'
        for name, kind in names.items()
    )
    path = work / f"models-{len(names)}.config"
    path.write_text(f"model_config_list {{\n{entries}}}\n")
    return path


def start_servingd(
    flags: Sequence[str],
    loads: Callable[[ServingdProcess], list[Load]],
    name: str,
    command: Sequence[str] | None = None,
) -> tuple[Server, Callable[[], None]]:
    """`command`: what to run instead of servingd's entry point (it gets the same flags;
    a module of this tests tree, which it finds on TREE_PYTHONPATH)."""
    env = None if command is None else {"PYTHONPATH": TREE_PYTHONPATH}
    server = ServingdProcess(list(flags), command=command, env=env)
    server.start()
    try:
        server.wait_healthy(180)
    except BaseException:
        server.stop()
        raise
    assert server.proc is not None
    metrics_url = f"http://127.0.0.1:{server.rest_port}{METRICS_PATH}"
    return Server(name, server.proc.pid, loads(server), metrics_url), server.stop


def start_echo(bodies: dict[str, Path]) -> tuple[Server, Callable[[], None]]:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "tests.bench.echo_server", f"--port={port}"], cwd=ROOT)
    try:
        _wait_grpc(f"127.0.0.1:{port}", proc, 120)
    except BaseException:
        procs.stop(proc)
        raise
    loads = echo_loads(f"127.0.0.1:{port}", bodies)
    return Server("echo", proc.pid, loads), lambda: procs.stop(proc)


def echo_loads(target: str, bodies: dict[str, Path]) -> list[Load]:
    """The transport ceiling's load point: the diagnostic's."""
    _, label, clients = targets.CEILING_POINT
    return [Load(label, clients, bodies["grpc-mlp-1"], grpc=target)]


def start_nghttpd(work: Path) -> tuple[Server, Callable[[], None]]:
    """nghttpd (C) answering the Predict path with a canned gRPC reply from a file.

    Not a gRPC server (no trailers): it only shows how many requests h2load itself can
    drive on this machine, far above what any server here reaches.
    """
    from tensorflow_serving.apis import predict_pb2

    nghttpd = shutil.which("nghttpd")
    if nghttpd is None:
        raise loadgen.LoadgenMissing("nghttpd not found: apt-get install nghttp2-server")
    root = work / "nghttpd"
    reply = predict_pb2.PredictResponse()
    reply.outputs["probabilities"].float_val.extend([0.1] * 10)
    path = root / PREDICT.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = loadgen.grpc_frame(reply.SerializeToString())
    path.write_bytes(frame)
    port = free_port()
    proc = subprocess.Popen(
        [nghttpd, "--no-tls", f"--htdocs={root}", "--address=127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                procs.stop(proc)
                raise RuntimeError("nghttpd did not start") from None
            time.sleep(0.1)
    body = work / "grpc-mlp-1.bin"
    load = Load("h2load -> nghttpd", 64, body, grpc=f"127.0.0.1:{port}", reply_bytes=len(frame))
    return Server("load generator ceiling", proc.pid, [load]), lambda: procs.stop(proc)


def check_reply(target: str) -> None:
    """One parsed Predict through the official stubs: the server really runs the model."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].dtype = 1
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.inputs["x"].float_val.append(4.0)
    with grpc.insecure_channel(target) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30)
    if list(reply.outputs["y"].float_val) != [4.0]:
        raise AssertionError(f"half_plus_two(4) answered {reply.outputs['y']}")


# -- the models ----------------------------------------------------------------------------


def export_edge_models(
    out: Path, names: Sequence[str] = tuple(bench_models.MODELS)
) -> dict[str, Path]:
    """The bench's models (tests/bench/models.py; `names` may also name other exporters of
    servingd.tools.export_models), exported once into out/models/KEY and reused while the
    exporting code and TensorFlow stay the same."""
    import hashlib

    from servingd.tools import edge_models, export_models

    versions = _versions()
    digest = hashlib.sha256(
        str(versions.get("tensorflow-cpu", versions.get("tensorflow"))).encode()
    )
    for module in (edge_models, export_models):
        digest.update(Path(str(module.__file__)).read_bytes())
    root = out / "models" / digest.hexdigest()[:16]
    models = {}
    for name in names:
        version = root / name / "1"
        if not (version / "saved_model.pb").exists():
            log.info("exporting %s into %s", name, version)
            partial = root / name / "partial"
            shutil.rmtree(partial, ignore_errors=True)
            export_models.EXPORTERS[name](partial)
            partial.rename(version)
            backdate(root / name)
        models[name] = root / name
    return models


def backdate(tree: Path, seconds: float = 60.0) -> None:
    """Sets every file and folder under `tree` `seconds` into the past: the bench's daemons
    poll once (--file_system_poll_wait_seconds=0), and a version changed within the settle
    time (1 s) at that poll is taken as still being written and loaded only once settled."""
    past = time.time() - seconds
    for path in (tree, *tree.rglob("*")):
        os.utime(path, (past, past))


# -- lifecycle: startup with 10 models, reload of an unchanged config, RSS per MLP ------------


def lifecycle(work: Path, models: dict[str, Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ten = model_config(work, models, {f"small{i}": "half_plus_two" for i in range(10)})
    t0 = time.monotonic()
    with ServingdProcess([f"--model_config_file={ten}", "--file_system_poll_wait_seconds=0"]) as s:
        s.wait_healthy(300)
        out["startup_to_ready_10_models_s"] = time.monotonic() - t0
        assert s.proc is not None
        loads_before = s.output().count(" is LOADING")
        applied_before = s.output().count("applying model config")
        t1 = time.monotonic()
        s.proc.send_signal(signal.SIGHUP)
        deadline = t1 + 30
        while s.output().count("applying model config") == applied_before:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            s.wait_healthy(60)
            out["reload_unchanged_config_s"] = time.monotonic() - t1
        if "reload_unchanged_config_s" not in out:
            out["reload_unchanged_config_s"] = "not measured: no config reload logged within 30 s"
        time.sleep(2.0)  # a model reload would show up as LOADING within this
        out["reload_unchanged_config_new_loads"] = s.output().count(" is LOADING") - loads_before
        out["reload_log_tail"] = s.output().splitlines()[-3:]
    rss = {}
    for n in (1, 5):
        config = model_config(work, models, {f"mlp{i}": "mlp" for i in range(n)})
        with ServingdProcess([f"--model_config_file={config}"]) as s:
            s.wait_healthy(300)
            assert s.proc is not None
            time.sleep(1.0)
            rss[n] = procs.rss_mib(s.proc.pid)
    out["rss_1_mlp_mib"] = rss[1]
    out["rss_5_mlp_mib"] = rss[5]
    out["rss_per_mlp_version_mib"] = (rss[5] - rss[1]) / 4
    log.info("lifecycle: %s", {k: v for k, v in out.items() if k != "reload_log_tail"})
    return out


# -- main --------------------------------------------------------------------------------


QUICK = {"rounds": 1, "pairs": 1, "duration": 1.0, "warmup": 0.3}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.run")
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per load point")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each")
    p.add_argument(
        "--rounds", type=int, default=2, help="rounds over all load points; medians reported"
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="back-to-back measurements of each target's two points; their median is the "
        "target's value (0: the table's medians)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of about 2 minutes: "
        + ", ".join(f"{k} {v:g}" for k, v in QUICK.items())
        + ", no MLServer, no load generator ceiling, no lifecycle",
    )
    p.add_argument("--skip-mlserver", action="store_true")
    p.add_argument("--skip-lifecycle", action="store_true")
    p.add_argument(
        "--skip-tflite",
        action="store_true",
        help="skip the TF Lite section (the CNN as SavedModel, TF Lite float32 and int8)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="a scenario to run, by its whole name (e.g. 'servingd, batching on', 'lifecycle', "
        "'tf lite'); repeatable",
    )
    p.add_argument(
        "--batching-parameters",
        type=Path,
        help="a BatchingParameters text proto for the batched daemon, instead of the bench's own",
    )
    p.add_argument("--out", type=Path, default=BENCH_OUT)
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.skip_mlserver = args.skip_lifecycle = args.skip_tflite = True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    procs.exit_on_sigterm()  # stopped by PID: still stop the daemons started
    only = {s.strip() for s in args.only if s.strip()}

    def wanted(name: str) -> bool:
        return not only or name in only

    started = time.monotonic()
    notes: list[str] = []
    notes_after: list[Callable[[], str]] = []
    results: list[dict[str, Any]] = []
    pairs: Pairs = {}
    front_end: Pairs = {}
    life: dict[str, Any] = {}
    sections: list[str] = []
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="servingd-bench-") as tmp:
        work = Path(tmp)
        models = export_edge_models(args.out)
        requests = bench_models.write_requests(work)
        bodies = write_bodies(work)  # the MLP's: the canned reply and the transport ceiling
        params = work / "batching.pbtxt"
        batching_text = (
            args.batching_parameters.read_text()
            if args.batching_parameters
            else EDGE_BATCHING_PARAMETERS
        )
        params.write_text(batching_text)
        config = model_config(work, models, {m: m for m in models})
        monitoring = work / "monitoring.config"
        monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
        common = ("--file_system_poll_wait_seconds=0", f"--monitoring_config_file={monitoring}")
        batching = ("--enable_batching", f"--batching_parameters_file={params}")

        starters: list[tuple[str, Callable[[], tuple[Server, Callable[[], None]]]]] = []
        if wanted("load generator ceiling") and not args.quick:
            starters.append(("load generator ceiling", lambda: start_nghttpd(work)))
        if wanted(targets.CEILING):
            starters.append((targets.CEILING, lambda: start_echo(bodies)))
        # The canned daemon answers before any model: it loads only half_plus_two.
        small = model_config(work, models, {"half_plus_two": "half_plus_two"})
        for name, flags, loads, command, sent in (
            (
                targets.CANNED,
                (f"--model_config_file={small}", *common, *batching),
                canned_loads,
                CANNED_COMMAND,
                bodies,
            ),
            (
                targets.ROUND_TRIP,
                (f"--model_config_file={config}", *common),
                round_trip_loads,
                ROUND_TRIP_COMMAND,
                requests,
            ),
            (
                targets.OFF,
                (f"--model_config_file={config}", *common),
                edge_loads(targets.OFF),
                None,
                requests,
            ),
            (
                targets.ON,
                (f"--model_config_file={config}", *common, *batching),
                edge_loads(targets.ON),
                None,
                requests,
            ),
        ):
            if not wanted(name):
                continue

            def start(
                flags: Sequence[str] = flags,
                name: str = name,
                loads: Callable[[ServingdProcess, dict[str, Path]], list[Load]] = loads,
                command: Sequence[str] | None = command,
                sent: dict[str, Path] = sent,
            ) -> Any:
                server, stop = start_servingd(flags, lambda s: loads(s, sent), name, command)
                if command is None:  # the patched daemons answer without running a model
                    check_reply(server.loads[0].grpc or "")
                return server, stop

            starters.append((name, start))
        if wanted(targets.MLSERVER):
            if args.skip_mlserver:
                notes.append("MLServer: skipped (--skip-mlserver or --quick)")
            else:
                venv, why = mlserver_setup.ensure_venv(args.out)
                if venv is None:
                    notes.append(f"MLServer: not measured: {why}")
                    log.warning("MLServer not measured: %s", why)
                else:
                    served = {m: models[m] / "1" for m in targets.BATCHED_MODELS}
                    mls = mlserver_setup.MLServer(venv, work, served)
                    starters.append((targets.MLSERVER, mls.start))
                    # After the run: its version is known once it has started.
                    notes_after.append(lambda: f"MLServer: {mls.describe()}")
        workers = None
        with contextlib.ExitStack() as stack:
            if wanted(targets.IN_PROCESS):
                workers = InProcessWorkers(models)
                stack.callback(workers.stop)
                workers.launch()  # ready once the servers are (run_rounds)
            results, pairs, front_end = run_rounds(starters, workers, args)
        notes += [note() for note in notes_after]
        if wanted("lifecycle") and not args.skip_lifecycle:
            life = lifecycle(
                work, {"half_plus_two": models["half_plus_two"], **mlp_models(args.out)}
            )
        if wanted("tf lite") and not args.skip_tflite:
            lite_rows, lite_notes = tflite_cnn.run(TFLITE_SECONDS, TFLITE_INTERPRETERS)
            sections.append(
                "TF Lite (the MobileNet-shaped 64x64 CNN, one image per gRPC request, "
                f"{TFLITE_INTERPRETERS} interpreters, {TFLITE_SECONDS:g} s per point, "
                "one daemon per form):\n\n" + tflite_cnn.markdown(lite_rows, lite_notes)
            )
            extra["tflite"] = [dataclasses.asdict(r) for r in lite_rows]

    goals = targets.evaluate(targets.all_targets(), results, pairs, front_end)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_end": os.getloadavg(),
        **_versions(),
    }
    notes += [
        "batching parameters: " + " ".join(batching_text.split()),
        "rows/batch: rows per TensorFlow run of the batch scheduler during the measured "
        "window (TF Serving's processed_batch_size, read from servingd's Prometheus page at "
        "the window's start and end); the in-process point of an 'at the formed batch' target "
        "runs that many rows per call",
        "in-process: servingd's loader in its own process per model, no allocator setting, "
        "TensorFlow's ops in the calling thread or in its inter-op threads, whichever was "
        "faster at the first point of that model and batch size",
        f"each load point: {args.warmup:g} s warm-up, {args.duration:g} s measured, "
        f"{args.rounds} interleaved rounds (all servers up at once), median reported; "
        f"targets: the median of {args.pairs} back-to-back pairs of their two points (order "
        "alternating), the value from the table's medians beside it; "
        "load generator: h2load (gRPC: one HTTP/2 connection, one stream per client; REST: "
        "one HTTP/1.1 connection per client); all processes share this machine's CPUs",
        f"whole run: {time.monotonic() - started:.0f} s",
    ]
    json_path, md_path = report.write(
        args.out, "bench", machine, results, goals, life, notes, sections, extra
    )
    sys.stdout.write(report.markdown(machine, results, goals, life, notes, sections) + "\n")
    sys.stdout.write(f"written: {json_path} {md_path}\n")
    return 0


def mlp_models(out: Path) -> dict[str, Path]:
    """The MLP, for the lifecycle's memory per loaded version (exported once, as the edge
    models are)."""
    return export_edge_models(out, ("mlp",))


def _versions() -> dict[str, str]:
    """The checkout's commit and the versions that move the numbers, so that a table read
    later says what it measured (a grpcio release alone moved gRPC by 25 %)."""
    from importlib import metadata

    found: dict[str, str] = {}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    if commit.returncode == 0:
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
        found["commit"] = commit.stdout.strip() + (" (uncommitted changes)" if dirty else "")
    for dist in ("tensorflow-cpu", "tensorflow", "grpcio", "protobuf", "numpy", "uvloop"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
