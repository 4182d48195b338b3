"""The MobileNet-shaped CNN as SavedModel, TF Lite float32 and TF Lite int8: gRPC Predict
throughput and p50 at 1 and 16 clients (h2load, one image per request), and each daemon's
RSS (idle, and the peak under load). One daemon per form, one after the other.

    .venv/bin/python -m tests.bench.tflite_cnn [--seconds 6] [--interpreters 2]

The box is shared and noisy: compare the forms within one run (ratios), not across runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servingd.servables.codecs import ndarray_to_tensor_proto
from servingd.tools.export_models import cnn_images, export_small_cnn, export_tflite
from servingd.wire.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from support.servingd_process import ServingdProcess
from tests.bench import loadgen, procs

PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"
WARMUP_S = 1.0


@dataclass
class Row:
    form: str
    clients: int
    rps: float
    p50_ms: float
    errors: int


def _request() -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "cnn"
    request.inputs["images"].CopyFrom(ndarray_to_tensor_proto(cnn_images(1, seed=3)))
    return request.SerializeToString()


def _sample_rss(pid: int, done: threading.Event, peaks: list[float]) -> None:
    while not done.wait(0.2):
        peaks.append(procs.rss_mib(pid))


def _tensorflow_mapped(pid: int) -> bool:
    return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()


def measure(form: str, base: Path, flags: list[str], seconds: float) -> tuple[list[Row], str]:
    rows = []
    with ServingdProcess(["--model_name=cnn", f"--model_base_path={base}", *flags]) as server:
        server.wait_healthy()
        assert server.proc is not None
        pid = server.proc.pid
        body = _request()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        reply = stub.Predict(predict_pb2.PredictRequest.FromString(body), timeout=60)
        reply_bytes = len(loadgen.grpc_frame(reply.SerializeToString()))  # as on the wire
        idle = procs.rss_mib(pid)
        peak = idle
        for clients in (1, 16):
            running = loadgen.start(
                url=f"http://{server.grpc_target}{PREDICT_PATH}",
                body=body,
                clients=clients,
                seconds=seconds,
                grpc=True,
            )
            done = threading.Event()
            peaks = [peak]
            sampler = threading.Thread(target=_sample_rss, args=(pid, done, peaks))
            sampler.start()
            try:
                window = (running.started + WARMUP_S, running.started + seconds)
                result = loadgen.finish(running, window, reply_bytes)
            finally:
                done.set()
                sampler.join(5)
            peak = max(peaks)
            lat = result.latencies_ms
            rows.append(
                Row(
                    form,
                    clients,
                    result.requests / (seconds - WARMUP_S),
                    float(np.median(lat)) if lat.size else float("nan"),
                    sum(result.errors.values()),
                )
            )
        tf = "TensorFlow mapped" if _tensorflow_mapped(pid) else "no TensorFlow mapped"
    return rows, f"{form}: RSS idle {idle:.0f} MiB, peak under load {peak:.0f} MiB ({tf})"


def run(seconds: float, interpreters: int) -> tuple[list[Row], list[str]]:
    """Exports the CNN in its three forms and measures each daemon in turn."""
    with tempfile.TemporaryDirectory(prefix="servingd-cnn-") as tmp:
        root = Path(tmp)
        export_small_cnn(root / "saved" / "1")
        export_tflite(root / "saved" / "1", root / "float" / "1")
        export_tflite(root / "saved" / "1", root / "int8" / "1", int8=True)
        lite = [f"--num_tflite_pools={interpreters}"]
        forms = [("SavedModel", "saved", []), ("TF Lite float32", "float", lite),
                 ("TF Lite int8", "int8", lite)]  # fmt: skip
        rows: list[Row] = []
        notes = []
        for form, folder, flags in forms:
            measured, note = measure(form, root / folder, flags, seconds)
            rows += measured
            notes.append(note)
    return rows, notes


def markdown(rows: Sequence[Row], notes: Sequence[str]) -> str:
    """The rows as a table, each form against the SavedModel at the same clients."""
    base = {r.clients: r for r in rows if r.form == "SavedModel"}
    lines = [
        "| form | clients | req/s | p50 ms | req/s vs SavedModel | p50 vs SavedModel | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = base[r.clients]
        lines.append(
            f"| {r.form} | {r.clients} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.rps / b.rps:.2f} | "
            f"{r.p50_ms / b.p50_ms:.2f} | {r.errors} |"
        )
    lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per load, warm-up included")
    parser.add_argument("--interpreters", type=int, default=2, help="TF Lite interpreters")
    args = parser.parse_args(argv)
    rows, notes = run(args.seconds, args.interpreters)
    print(markdown(rows, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
