"""TensorFlow Serving clients run inside the e2e container with the package's own python.

  clients.py rest MODEL JSON_INSTANCES      REST :predict, prints the predictions (JSON list)
  clients.py grpc MODEL JSON_INSTANCES      gRPC Predict with the official tensorflow_serving stubs
  clients.py loop MODEL JSON_INSTANCES PREFIX
      REST :predict in a loop until PREFIX.stop exists; PREFIX.ok is written after the first
      success, PREFIX.done gets {"ok": N, "failed": N, "errors": [...], "longest_gap_s": S}
      at the end (S: the longest time between two successes, the interruption a client saw).

Only the standard library, grpcio and tensorflow-serving-api: what the package bundles.
"""

import json
import os
import sys
import time
import urllib.request

REST = "http://127.0.0.1:8501"
GRPC = "127.0.0.1:8500"


def rest(model: str, instances: list[float]) -> list[float]:
    req = urllib.request.Request(
        f"{REST}/v1/models/{model}:predict",
        data=json.dumps({"instances": instances}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [float(v) for v in json.load(resp)["predictions"]]


def grpc_predict(model: str, instances: list[float]) -> list[float]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = "serving_default"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(instances, dtype=tf.float32))
    with grpc.insecure_channel(GRPC) as channel:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=10)
    return [float(v) for v in tf.make_ndarray(resp.outputs["y"]).reshape(-1)]


def loop(model: str, instances: list[float], prefix: str) -> None:
    ok = failed = 0
    errors: list[str] = []
    last_success: float | None = None
    longest_gap = 0.0
    while not os.path.exists(prefix + ".stop"):
        try:
            rest(model, instances)
            now = time.monotonic()
            if last_success is not None:
                longest_gap = max(longest_gap, now - last_success)
            last_success = now
            ok += 1
            if ok == 1:
                with open(prefix + ".ok", "w") as f:
                    f.write("1")
        except Exception as e:
            failed += 1
            errors.append(f"{time.monotonic():.3f} {type(e).__name__}: {e}"[:300])
        time.sleep(0.05)
    with open(prefix + ".done", "w") as f:
        json.dump(
            {
                "ok": ok,
                "failed": failed,
                "errors": errors[:20],
                "longest_gap_s": round(longest_gap, 3),
            },
            f,
        )


if __name__ == "__main__":
    kind, model, instances = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if kind == "rest":
        print(json.dumps(rest(model, instances)))
    elif kind == "grpc":
        print(json.dumps(grpc_predict(model, instances)))
    elif kind == "loop":
        loop(model, instances, sys.argv[4])
    else:
        sys.exit(f"unknown client {kind!r}")
