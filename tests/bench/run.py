"""`make bench`: servingd against the limit and against its peer, in one run, as ratios.

Servers (each its own process, started and stopped by PID, on 127.0.0.1 only):
- transport ceiling: a grpc.aio PredictionService that decodes the request and returns a
  canned reply (tests/bench/echo_server.py): what gRPC in Python costs with no model;
- servingd, canned reply: servingd itself (batching on, models loaded) whose Predict
  returns a canned reply before any of its work (tests/bench/ablation.py, step canned):
  what servingd's own server costs per call, the bound of the batching targets;
- servingd with batching off, then on, serving the project's half_plus_two (overhead-bound),
  MLP 784-512-512-10 (dense, small: its batch-1 run costs about what a request's transport
  costs) and wide_mlp 784-4096-4096-10 (dense, model-bound) from one model config file; and
  batching on with compute_thread_nice 15 (servingd's own option) at 64 clients;
- the peer: Seldon MLServer (its own virtualenv under build/bench/, installed on first use
  and cached) with a minimal custom runtime over the same SavedModel, REST and gRPC.
The limit: the same SavedModel run in-process with servingd's loader (tests/bench/inprocess.py)
at batch 1 and at the scheduler's batch size.

Load: h2load (tests/bench/loadgen.py), closed-loop clients sending batch-1 requests (and a
[64,784] payload) at 1, 16 and 64 clients; its own ceiling is measured against nghttpd (a
C HTTP/2 server returning the reply bytes from a file). For every load point: throughput,
p50/p99 latency, server CPU (cores busy) and RSS, load generator CPU.
Then each target's two load points back to back, a few times (tests/bench/targets.py:
the median of those pairs is the target's value), then startup to READY with 10 models, a
reload of the unchanged config, and RSS per MLP.

Results: a table on stdout, build/bench/bench.json and build/bench/bench.md.
    python -m tests.bench.run [--rounds 3] [--pairs 3] [--duration 2] [--skip-mlserver]
        [--only NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(ROOT / "tests"))

from support.servingd_process import ServingdProcess, free_port  # noqa: E402
from tests.bench import loadgen, procs, report, targets  # noqa: E402
from tests.bench.mlserver import setup as mlserver_setup  # noqa: E402

log = logging.getLogger("bench")

PY = sys.executable
# servingd's sources and this tests tree, for a daemon run as `python -m tests.bench...`.
TREE_PYTHONPATH = os.pathsep.join((str(ROOT / "src"), str(ROOT)))
BATCH = 64  # max_batch_size: the scheduler's batch size, and the large payload's rows
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
FEATURES = {"mlp": 784, "half_plus_two": 1, "wide_mlp": 784}
PREDICT = "/tensorflow.serving.PredictionService/Predict"
METRICS_PATH = "/monitoring/prometheus/metrics"
PROCESSED_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
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
    models: dict[str, Path],
    args: argparse.Namespace,
    with_inprocess: bool,
) -> tuple[list[dict[str, Any]], dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]]:
    """Starts every server, runs every load point once per round, round after round, then
    the targets' pairs (see tests/bench/targets.py); returns the points and the pairs.

    The machine's speed drifts (other tenants, CPU steal): interleaving puts every scenario
    under the same drift, and each point reports the median of its rounds.
    """
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for name, start in starters:
            log.info("scenario %s: starting server", name)
            server, stop = start()
            stack.callback(stop)
            servers[name] = server
        for round_ in range(args.rounds):
            log.info("round %d of %d", round_ + 1, args.rounds)
            points = inprocess(models, args) if with_inprocess else []
            for name, server in servers.items():
                points += [measure(server, load, args, name) for load in server.loads]
            for point in points:
                runs.setdefault((point["scenario"], point["load"], point["clients"]), []).append(
                    point
                )
        pairs = run_pairs(servers, models, args, with_inprocess)
    return [median_of(points) for points in runs.values()], pairs


def run_pairs(
    servers: dict[str, Server],
    models: dict[str, Path],
    args: argparse.Namespace,
    with_inprocess: bool,
) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Each target's two points measured back to back, `args.pairs` times, the order
    alternating (so that a steady drift favours neither); targets whose points are not
    running here are left out."""

    def runner(key: targets.PointKey) -> Callable[[], dict[str, Any]] | None:
        scenario, label, clients = key
        if scenario == targets.IN_PROCESS:
            if not with_inprocess:
                return None
            model, _, batch = label.rpartition(" batch ")
            return lambda: inprocess_point(models, model, int(batch), args)
        server = servers.get(scenario)
        if server is None:
            return None
        for load in server.loads:
            if (load.label, load.clients) == (label, clients):
                return functools.partial(measure, server, load, args, scenario)
        return None

    out: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for target in targets.all_targets(BATCH) if args.pairs > 0 else ():
        first, second = runner(target.first), runner(target.second)
        if first is None or second is None:
            continue
        log.info("pairs: %s", target.name)
        for i in range(args.pairs):
            if i % 2 == 0:
                a = first()
                b = second()
            else:
                b = second()
                a = first()
            out.setdefault(target.name, []).append((a, b))
            log.info("pair %d: %s", i + 1, target.value(a, b))
    return out


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


def servingd_loads(server: ServingdProcess, bodies: dict[str, Path]) -> list[Load]:
    g, rest = server.grpc_target, f"http://127.0.0.1:{server.rest_port}/v1/models"
    loads = []
    for c in (1, 16, 64):
        loads.append(Load("gRPC mlp", c, bodies["grpc-mlp-1"], grpc=g))
    for model in ("half_plus_two", "wide_mlp"):
        for c in (1, 64):
            loads.append(Load(f"gRPC {model}", c, bodies[f"grpc-{model}-1"], grpc=g))
    for c in (1, 16, 64):
        loads.append(Load("REST mlp", c, bodies["rest-mlp-1"], url=f"{rest}/mlp:predict"))
    loads.append(
        Load(
            "REST half_plus_two",
            1,
            bodies["rest-half_plus_two-1"],
            url=f"{rest}/half_plus_two:predict",
        )
    )
    loads.append(Load(f"gRPC mlp [{BATCH},784]", 16, bodies[f"grpc-mlp-{BATCH}"], grpc=g))
    loads.append(
        Load(f"REST mlp [{BATCH},784]", 16, bodies[f"rest-mlp-{BATCH}"], url=f"{rest}/mlp:predict")
    )
    return loads


def canned_loads(server: ServingdProcess, bodies: dict[str, Path]) -> list[Load]:
    """servingd with a canned Predict: the load of the batching targets' bound."""
    _, label, clients = targets.CANNED_POINT
    return [Load(label, clients, bodies["grpc-mlp-1"], grpc=server.grpc_target)]


# servingd with PredictionService.Predict answering a canned reply (see targets.CANNED).
CANNED_COMMAND = (PY, "-m", "tests.bench.ablation", "serve", "canned", "--")


def nice_loads(server: ServingdProcess, bodies: dict[str, Path]) -> list[Load]:
    """compute_thread_nice against the default: the batched loads it is for."""
    g = server.grpc_target
    return [Load(f"gRPC {m}", 64, bodies[f"grpc-{m}-1"], grpc=g) for m in ("mlp", "wide_mlp")]


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
    target = f"127.0.0.1:{port}"
    loads = [Load("gRPC mlp", c, bodies["grpc-mlp-1"], grpc=target) for c in (1, 16, 64)]
    # half_plus_two's request at 1 client: the p50 floor of its latency target.
    loads.append(Load("gRPC half_plus_two", 1, bodies["grpc-half_plus_two-1"], grpc=target))
    return Server("echo", proc.pid, loads), lambda: procs.stop(proc)


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


# -- the limit ---------------------------------------------------------------------------


def inprocess(models: dict[str, Path], args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        inprocess_point(models, model, batch, args) for model in FEATURES for batch in (1, BATCH)
    ]


def inprocess_point(
    models: dict[str, Path], model: str, batch: int, args: argparse.Namespace
) -> dict[str, Any]:
    """`model` run in-process (its own Python process) at `batch` rows per call."""
    cmd = [
        PY,
        "-m",
        "tests.bench.inprocess",
        f"--model-dir={models[model] / '1'}",
        f"--features={FEATURES[model]}",
        f"--batch={batch}",
        f"--duration={args.duration}",
        f"--warmup={args.warmup}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    log.info(
        "in-process %s batch %d: %.0f calls/s, p50 %.3f ms",
        model,
        batch,
        r["throughput_rps"],
        r["latency_ms"]["p50"],
    )
    return {
        "scenario": targets.IN_PROCESS,
        "load": f"{model} batch {batch}",
        "clients": 1,
        "throughput_rps": r["throughput_rps"],
        "rows_per_s": r["rows_per_s"],
        "latency_ms": r["latency_ms"],
        "errors": {},
        "server_cpu_cores": r["cpu_s"] / r["duration_s"],
    }


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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.run")
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per load point")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each")
    p.add_argument(
        "--rounds", type=int, default=3, help="rounds over all load points; medians reported"
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="back-to-back measurements of each target's two points; their median is the "
        "target's value (0: the table's medians)",
    )
    p.add_argument("--skip-mlserver", action="store_true")
    p.add_argument("--skip-lifecycle", action="store_true")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="a scenario to run, by its whole name (e.g. 'servingd, batching on'); repeatable",
    )
    p.add_argument("--out", type=Path, default=ROOT / "build" / "bench")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    only = {s.strip() for s in args.only if s.strip()}

    def wanted(name: str) -> bool:
        return not only or name in only

    started = time.monotonic()
    notes: list[str] = []
    results: list[dict[str, Any]] = []
    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    life: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="servingd-bench-") as tmp:
        work = Path(tmp)
        from servingd.tools.export_models import EXPORTERS

        models = {model: work / model for model in FEATURES}
        for model, base in models.items():
            EXPORTERS[model](base / "1")
        bodies = write_bodies(work)
        params = work / "batching.pbtxt"
        params.write_text(BATCHING_PARAMETERS)
        config = model_config(work, models, {m: m for m in FEATURES})
        monitoring = work / "monitoring.config"
        monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
        common = (
            f"--model_config_file={config}",
            "--file_system_poll_wait_seconds=0",
            f"--monitoring_config_file={monitoring}",
        )

        starters: list[tuple[str, Callable[[], tuple[Server, Callable[[], None]]]]] = []
        if wanted("load generator ceiling"):
            starters.append(("load generator ceiling", lambda: start_nghttpd(work)))
        if wanted("transport ceiling"):
            starters.append(("transport ceiling", lambda: start_echo(bodies)))
        batching = (*common, "--enable_batching", f"--batching_parameters_file={params}")
        for name, flags, loads, command in (
            (targets.CANNED, batching, canned_loads, CANNED_COMMAND),
            (targets.OFF, common, servingd_loads, None),
            (targets.ON, batching, servingd_loads, None),
            (
                targets.NICE,
                (*batching, f"--compute_thread_nice={targets.NICE_VALUE}"),
                nice_loads,
                None,
            ),
        ):
            if not wanted(name):
                continue

            def start(
                flags: Sequence[str] = flags,
                name: str = name,
                loads: Callable[[ServingdProcess, dict[str, Path]], list[Load]] = loads,
                command: Sequence[str] | None = command,
            ) -> Any:
                server, stop = start_servingd(flags, lambda s: loads(s, bodies), name, command)
                if command is None:  # the canned reply runs no model
                    check_reply(server.loads[0].grpc or "")
                return server, stop

            starters.append((name, start))
        if wanted("MLServer"):
            if args.skip_mlserver:
                notes.append("MLServer: skipped (--skip-mlserver)")
            else:
                venv, why = mlserver_setup.ensure_venv(args.out)
                if venv is None:
                    notes.append(f"MLServer: not measured: {why}")
                    log.warning("MLServer not measured: %s", why)
                else:
                    mls = mlserver_setup.MLServer(venv, work, models["mlp"] / "1", bodies)
                    starters.append(("MLServer", mls.start))
                    notes.append(f"MLServer: {mls.describe()}")
        results, pairs = run_rounds(starters, models, args, wanted("in-process"))
        if wanted("lifecycle") and not args.skip_lifecycle:
            life = lifecycle(work, models)

    goals = targets.evaluate(targets.all_targets(BATCH), results, pairs)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_end": os.getloadavg(),
        **_versions(),
    }
    notes += [
        "batching parameters: " + " ".join(BATCHING_PARAMETERS.split()),
        "rows/batch: rows per TensorFlow run of the batch scheduler during the measured "
        "window (TF Serving's processed_batch_size, read from servingd's Prometheus page at "
        "the window's start and end)",
        f"each load point: {args.warmup:g} s warm-up, {args.duration:g} s measured, "
        f"{args.rounds} interleaved rounds (all servers up at once), median reported; "
        f"targets: the median of {args.pairs} back-to-back pairs of their two points (order "
        "alternating), the value from the table's medians beside it; "
        "load generator: h2load (gRPC: one HTTP/2 connection, one stream per client; REST: "
        "one HTTP/1.1 connection per client); all processes share this machine's CPUs",
        f"whole run: {time.monotonic() - started:.0f} s",
    ]
    json_path, md_path = report.write(args.out, "bench", machine, results, goals, life, notes)
    sys.stdout.write(report.markdown(machine, results, goals, life, notes) + "\n")
    sys.stdout.write(f"written: {json_path} {md_path}\n")
    return 0


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
