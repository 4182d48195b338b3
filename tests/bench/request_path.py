"""Microbenchmark: servingd's own Python work per gRPC Predict, piece by piece (no server).

    python -m tests.bench.request_path [--repeat 20000]

Exports the project's MLP into a temporary directory, loads it with servingd's loader and
times, one after the other in this process, each step the event-loop thread runs for a
batch-1 request besides grpc.aio's own work: parsing the request, the admission check, the
model spec, tensor decode, signature checks, the batch task, the request metrics, building
and serializing the response. Prints microseconds per call. The sum is what servingd adds
on top of a canned-reply server (compare with `make bench`'s loop-thread figures).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _time(name: str, fn: Callable[[], Any], repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    us = (time.perf_counter() - start) / repeat * 1e6
    sys.stdout.write(f"{name:34s} {us:8.2f} us\n")
    return us


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.request_path")
    p.add_argument("--repeat", type=int, default=20000)
    args = p.parse_args(argv)

    from tensorflow_serving.apis import predict_pb2

    from servingd.apis.admission import check_tensor_protos
    from servingd.apis.grpc.model_spec import fill_model_spec, model_request
    from servingd.apis.request_metrics import GRPC, observe_request
    from servingd.batching import tensors
    from servingd.batching.scheduler import BatchTask
    from servingd.core.ids import ServableId
    from servingd.servables.codecs import ndarray_to_tensor_proto, tensor_proto_to_ndarray
    from servingd.servables.saved_model import SavedModelLoader
    from servingd.tools.export_models import export_mlp

    with tempfile.TemporaryDirectory(prefix="servingd-request-path-") as tmp:
        export_mlp(Path(tmp) / "1")
        loader = SavedModelLoader(ServableId("mlp", 1), str(Path(tmp) / "1"))
        loader.load()
        servable = loader.servable()
    signature = servable.signature("")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mlp"
    x = request.inputs["x"]
    x.dtype = 1  # DT_FLOAT
    x.tensor_shape.dim.add().size = 1
    x.tensor_shape.dim.add().size = 784
    x.tensor_content = np.random.default_rng(0).random((1, 784), np.float32).tobytes()
    wire = request.SerializeToString()
    inputs = {"x": tensor_proto_to_ndarray(request.inputs["x"])}
    outputs = {"probabilities": np.random.default_rng(1).random((1, 10), np.float32)}

    def observe() -> None:
        with observe_request("Predict", GRPC) as observed:
            observed.model_name = "mlp"

    def response() -> Any:
        reply = predict_pb2.PredictResponse()
        fill_model_spec(reply.model_spec, "mlp", 1, "serving_default")
        for alias, array in outputs.items():
            ndarray_to_tensor_proto(array, reply.outputs[alias], use_tensor_content=False)
        return reply

    reply = response()
    n = args.repeat
    total = sum(
        (
            _time("parse PredictRequest", lambda: predict_pb2.PredictRequest.FromString(wire), n),
            _time(
                "admission element check", lambda: check_tensor_protos(request.inputs, 1 << 26), n
            ),
            _time("model spec", lambda: model_request(request), n),
            _time(
                "decode inputs",
                lambda: {a: tensor_proto_to_ndarray(t) for a, t in request.inputs.items()},
                n,
            ),
            _time(
                "validate inputs + output filter",
                lambda: (signature.validate_inputs(inputs), signature.validate_output_filter(())),
                n,
            ),
            _time(
                "task size + shape key",
                lambda: (
                    tensors.task_size(inputs),
                    tensors.shape_key(inputs, pad_variable_length=False),
                ),
                n,
            ),
            _time("BatchTask (with its Future)", lambda: BatchTask(inputs, 1), n),
            _time("concurrent.futures.Future alone", concurrent.futures.Future, n),
            _time("request metrics", observe, n),
            _time("build response", response, n),
            _time("serialize response", reply.SerializeToString, n),
        )
    )
    sys.stdout.write(f"{'sum':34s} {total:8.2f} us\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
