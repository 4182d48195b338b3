"""A SavedModel whose run time the caller chooses: y = n after spinning n times.

The work is a count of loop iterations, not a duration: a busy machine stretches its wall
time, not the CPU time the threads that ran it gain (about 2-3 us of CPU per iteration).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2


class _Spin(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="n")])
    def spin(self, n: tf.Tensor) -> dict[str, tf.Tensor]:
        i = tf.while_loop(lambda i: i < n, lambda i: i + 1, [tf.constant(0, tf.int64)])[0]
        return {"y": i}


class _BatchedSpin(tf.Module):
    """The same with a batch dimension (so it can be batched): spins max(n) times."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
    def spin(self, n: tf.Tensor) -> dict[str, tf.Tensor]:
        most = tf.reduce_max(n)
        i = tf.while_loop(lambda i: i < most, lambda i: i + 1, [tf.constant(0, tf.int64)])[0]
        return {"y": tf.fill(tf.shape(n), i)}


def export_spin(version_dir: Path, *, batched: bool = False) -> Path:
    module = _BatchedSpin() if batched else _Spin()
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.spin})
    return version_dir


def spin_request(
    n: int, name: str = "spin", *, batched: bool = False
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["n"].CopyFrom(tf.make_tensor_proto([n] if batched else n, dtype=tf.int64))
    return request


def rest_spins(rest_port: int, count: int, n: int = 10**12) -> Callable[[], None]:
    """`count` REST :predicts of `n` spins (default: never-ending), each on its own
    connection, sent at once; returns how to hang up on them (close the connections)."""
    body = json.dumps({"inputs": n}).encode()
    request = (
        b"POST /v1/models/spin:predict HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    clients = [socket.create_connection(("127.0.0.1", rest_port)) for _ in range(count)]
    for sock in clients:
        sock.sendall(request)

    def hang_up() -> None:
        for sock in clients:
            sock.close()

    return hang_up
