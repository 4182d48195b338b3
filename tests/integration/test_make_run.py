"""`make run` from the repo: it exports the demo model and serves it to the official client."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from support.paths import REPO_ROOT
from support.servingd_process import free_ports


@pytest.mark.slow
def test_make_run_serves_the_demo_model() -> None:
    grpc_port, rest_port = free_ports(2)
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"GRPC_PORT={grpc_port}", f"REST_PORT={rest_port}"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so the server stops with it
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [2.0], [5.0]], dtype=tf.float32))
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                reply = stub.Predict(request, timeout=5)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]).ravel(), [2.5, 3.0, 4.5])
        assert reply.model_spec.version.value == 1
        channel.close()
    finally:
        with contextlib.suppress(ProcessLookupError):  # make may already have failed
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
