"""Where a batched gRPC Predict's event-loop time goes: the same daemon, step by step.

    python -m tests.bench.ablation [--rounds 4] [--duration 3] [--clients 64]

Starts one servingd per step (batching on, the project's MLP), each with
PredictionService.Predict replaced by more of the real request path, then loads each with
h2load (batch-1 MLP requests, one HTTP/2 connection, `--clients` streams) in interleaved
rounds and reports the medians of throughput and of the event-loop thread's CPU per request
(`/proc/PID/task/PID/stat`: the loop runs on the main thread). Every step keeps the daemon's
own gRPC server, services and admission wrapper; only the handler body differs:

  canned  a prebuilt reply
  decode  + request metrics, ModelSpec, tensor decode, a real response encode
  lookup  + version handle and signature checks
  loop    + awaiting a future that the loop itself resolves in bulk (suspension alone)
  thread  + that future resolved in bulk by another thread (one call_soon_threadsafe)
  bridge  + waiting as servingd does: a concurrent.futures.Future per request, set by
            another thread, reaching the loop through loop_bridge.watch
  full    servingd's batched path: scheduler, batch thread, TensorFlow
  loopbatch  `lookup`, then the calls that arrive in one loop iteration merged and run by
          TensorFlow on the event loop itself (ops in the caller thread), no batch thread
  off     servingd with batching off (runs on worker threads), for reference

The differences between neighbouring rows are what each layer costs on the loop thread
(the last two are alternatives to `full`, not layers on it);
`canned` against the transport ceiling is what the daemon's server costs. `make bench` runs
two steps as scenarios of its own: `canned` ("servingd, canned reply", the bound of the
batching targets) and `bridge` with batching off on every bench model ("servingd, up to the
run", the floor of the p50 targets; for Classify, `bridge` looks the version up, waits the
same way and answers a fixed classification). The whole ablation is not part of make bench
(two minutes more, and only about servingd's own structure).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.proc_threads import threads  # noqa: E402
from support.servingd_process import ServingdProcess  # noqa: E402
from tests.bench import loadgen, procs, run  # noqa: E402

log = logging.getLogger("ablation")
STEPS = ("canned", "decode", "lookup", "loop", "thread", "bridge", "full", "loopbatch", "off")
_TICK = os.sysconf("SC_CLK_TCK")


# -- the patched daemon (python -m tests.bench.ablation serve STEP -- FLAGS) ---------------


def _bulk_resolver(resolve: Callable[[list[Any]], None]) -> Callable[[Any], None]:
    """A thread that hands everything queued since its last wake-up to `resolve` at once."""
    pending: list[Any] = []
    cond = threading.Condition()

    def work() -> None:
        while True:
            with cond:
                while not pending:
                    cond.wait()
                items = pending[:]
                pending.clear()
            resolve(items)

    def put(item: Any) -> None:
        with cond:
            pending.append(item)
            if len(pending) == 1:  # as the batch scheduler: wake only when work appears
                cond.notify()

    threading.Thread(target=work, daemon=True).start()
    return put


def _set_all(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def waiter_for(step: str) -> Callable[[], Coroutine[Any, Any, None]]:
    """How a request of `step` waits after its lookup, as a batch's request would (a no-op
    for the steps before `loop`)."""
    from servingd.apis.loop_bridge import watch

    on_loop: list[asyncio.Future[None]] = []

    def resolve_threadsafe(items: list[asyncio.Future[None]]) -> None:
        items[0].get_loop().call_soon_threadsafe(_set_all, items)

    def resolve_concurrent(items: list[concurrent.futures.Future[None]]) -> None:
        for future in items:
            if future.set_running_or_notify_cancel():
                future.set_result(None)

    def flush_on_loop() -> None:
        waiters = on_loop[:]
        on_loop.clear()
        _set_all(waiters)

    to_thread = _bulk_resolver(resolve_threadsafe) if step == "thread" else None
    to_bridge = _bulk_resolver(resolve_concurrent) if step == "bridge" else None

    async def wait_like_a_batch() -> None:
        loop = asyncio.get_running_loop()
        if step == "loop":
            waiter = loop.create_future()
            on_loop.append(waiter)
            if len(on_loop) == 1:
                loop.call_soon(flush_on_loop)
            await waiter
        elif to_thread is not None:
            waiter = loop.create_future()
            to_thread(waiter)
            await waiter
        elif to_bridge is not None:
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            to_bridge(future)
            await watch(future, loop)

    return wait_like_a_batch


def patched_classify(step: str) -> Callable[..., Any]:
    """Classify up to `step` (the bridge step and those before it): the version looked up,
    the wait, a fixed two-class answer; the tf.Examples are not parsed."""
    from tensorflow_serving.apis import classification_pb2

    from servingd.apis.grpc.model_spec import fill_model_spec, model_request
    from servingd.apis.request_metrics import GRPC, observe_request

    wait_like_a_batch = waiter_for(step)

    async def classify(self: Any, request: Any, context: Any) -> Any:
        with observe_request("Classify", GRPC) as observed:
            observed.model_name = request.model_spec.name
            spec = model_request(request)
            handle = self._runner.lookup.handle(spec.name, spec.version, spec.label)
            try:
                handle.servable.signature(spec.signature_name)
                await wait_like_a_batch()
            finally:
                handle.release()
        response = classification_pb2.ClassificationResponse()
        fill_model_spec(response.model_spec, spec.name, 1, "serving_default")
        for _ in request.input.example_list.examples:
            row = response.result.classifications.add()
            for label, score in (("0", 0.5), ("1", 0.5)):
                row.classes.add(label=label, score=score)
        return response

    return classify


def patched_predict(step: str) -> Callable[..., Any]:
    from tensorflow_serving.apis import predict_pb2

    from servingd.apis.grpc.model_spec import fill_model_spec, model_request
    from servingd.apis.request_metrics import GRPC, observe_request
    from servingd.batching import tensors
    from servingd.servables.codecs import ndarray_to_tensor_proto, tensor_proto_to_ndarray

    canned = predict_pb2.PredictResponse()
    canned.outputs["probabilities"].float_val.extend([0.1] * 10)
    output = np.full((1, 10), 0.1, np.float32)
    wait_like_a_batch = waiter_for(step)
    batch: list[tuple[dict[str, np.ndarray], asyncio.Future[Any]]] = []

    def run_batch_on_loop(servable: Any, signature: Any) -> None:
        items = batch[:]
        batch.clear()
        merged = tensors.merge(
            [inputs for inputs, _ in items],
            list(signature.inputs),
            padded_size=len(items),
            pad_variable_length=False,
        )
        outputs = servable.run(signature, merged, list(signature.outputs), in_caller_thread=True)
        parts = tensors.split(
            outputs, [1] * len(items), [tuple(signature.outputs)] * len(items),
            padded_size=len(items),
        )  # fmt: skip
        for (_, waiter), part in zip(items, parts, strict=True):
            if not waiter.done():
                waiter.set_result(part)

    async def predict(self: Any, request: Any, context: Any) -> Any:
        if step == "canned":
            return canned
        with observe_request("Predict", GRPC) as observed:
            observed.model_name = request.model_spec.name
            spec = model_request(request)
            inputs = {alias: tensor_proto_to_ndarray(t) for alias, t in request.inputs.items()}
            if step != "decode":
                handle = self._runner.lookup.handle(spec.name, spec.version, spec.label)
                try:
                    signature = handle.servable.signature(spec.signature_name)
                    feeds = signature.validate_inputs(inputs)
                    signature.validate_output_filter(())
                    if step == "loopbatch":
                        waiter = asyncio.get_running_loop().create_future()
                        batch.append((dict(zip(signature.inputs, feeds, strict=True)), waiter))
                        if len(batch) == 1:
                            asyncio.get_running_loop().call_soon(
                                run_batch_on_loop, handle.servable, signature
                            )
                        await waiter
                    else:
                        await wait_like_a_batch()
                finally:
                    handle.release()
        response = predict_pb2.PredictResponse()
        fill_model_spec(response.model_spec, spec.name, 1, "serving_default")
        ndarray_to_tensor_proto(output, response.outputs["probabilities"], use_tensor_content=False)
        return response

    return predict


def serve(step: str, flags: Sequence[str]) -> int:
    from servingd.apis.grpc import prediction_service
    from servingd.daemon.main import main

    if step not in ("full", "off"):
        prediction_service.PredictionService.Predict = patched_predict(step)
    if step == "bridge":  # make bench's p50 floor for tabular, a Classify model
        prediction_service.PredictionService.Classify = patched_classify(step)
    return main(list(flags))


# -- the driver ------------------------------------------------------------------------------


def loop_thread_seconds(pid: int) -> float:
    """CPU of the process's main thread (servingd's event loop), so far."""
    _, _, ticks = threads(pid)[pid]
    return ticks / _TICK


def measure(
    server: ServingdProcess, load: run.Load, reply_bytes: int | None, seconds: float
) -> tuple[float, float]:
    """(req/s, loop-thread CPU microseconds per request) over `seconds` after 0.5 s warm-up."""
    assert server.proc is not None
    warmup = 0.5
    running = loadgen.start(
        url=f"http://{load.grpc}{load.method}",
        body=load.body.read_bytes(),
        clients=load.clients,
        seconds=warmup + seconds,
        grpc=True,
    )
    window = (running.started + warmup, running.started + warmup + seconds)
    time.sleep(max(0.0, window[0] - time.time()))
    cpu0 = loop_thread_seconds(server.proc.pid)
    time.sleep(max(0.0, window[1] - time.time()))
    cpu1 = loop_thread_seconds(server.proc.pid)
    done = loadgen.finish(running, window, reply_bytes)
    if done.errors or not done.requests:
        raise RuntimeError(f"{load.label}: {done.requests} requests, errors {done.errors}")
    return done.requests / seconds, (cpu1 - cpu0) / done.requests * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
    p = argparse.ArgumentParser(prog="python -m tests.bench.ablation")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per point")
    p.add_argument("--clients", type=int, default=64)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    procs.exit_on_sigterm()  # stopped by PID: still stop the daemons started
    samples: dict[str, list[tuple[float, float]]] = {step: [] for step in STEPS}
    with tempfile.TemporaryDirectory(prefix="servingd-ablation-") as tmp:
        work = Path(tmp)
        mlp = run.export_edge_models(run.BENCH_OUT, ("mlp",))["mlp"]
        bodies = run.write_bodies(work)
        params = work / "batching.pbtxt"
        params.write_text(run.BATCHING_PARAMETERS)
        config = run.model_config(work, {"mlp": mlp}, {"mlp": "mlp"})
        flags = [
            f"--model_config_file={config}",
            "--file_system_poll_wait_seconds=0",
            "--enable_batching",
            f"--batching_parameters_file={params}",
        ]
        servers = {
            step: ServingdProcess(
                flags if step != "off" else flags[:2],
                command=[sys.executable, "-m", "tests.bench.ablation", "serve", step, "--"],
                env={"PYTHONPATH": run.TREE_PYTHONPATH},
            )
            for step in STEPS
        }
        try:
            for server in servers.values():
                server.start()
            for server in servers.values():
                server.wait_healthy(300)
            loads = {
                step: run.Load("gRPC mlp", args.clients, bodies["grpc-mlp-1"], grpc=s.grpc_target)
                for step, s in servers.items()
            }
            replies = {step: run._reply_bytes(load) for step, load in loads.items()}
            for round_ in range(args.rounds):
                log.info("round %d of %d", round_ + 1, args.rounds)
                for step in STEPS:
                    point = measure(servers[step], loads[step], replies[step], args.duration)
                    samples[step].append(point)
                    log.info("%-7s %6.0f req/s  loop %4.0f us/request", step, *point)
        finally:
            for server in servers.values():
                server.stop()
    sys.stdout.write(report(samples, args))
    return 0


def report(samples: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> str:
    lines = [
        f"MLP batch-1 gRPC, {args.clients} streams on one connection, batching on; medians of "
        f"{args.rounds} interleaved rounds of {args.duration:g} s",
        "",
        "| step | req/s | loop-thread CPU us/request | vs previous step |",
        "|---|---:|---:|---:|",
    ]
    previous: float | None = None
    for step in STEPS:
        rps = float(np.median([s[0] for s in samples[step]]))
        loop_us = float(np.median([s[1] for s in samples[step]]))
        delta = "" if previous is None else f"{loop_us - previous:+.0f}"
        lines.append(f"| {step} | {rps:.0f} | {loop_us:.0f} | {delta} |")
        previous = loop_us
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
