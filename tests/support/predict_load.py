"""Closed-loop Predict clients on their own threads: every failure and version is kept."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class PredictLoad:
    """`clients` threads calling half_plus_two's Predict on `channel` until the block ends."""

    def __init__(self, channel: grpc.Channel, model: str, clients: int = 16) -> None:
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.request = predict_pb2.PredictRequest()
        self.request.model_spec.name = model
        self.request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
        self.lock = threading.Lock()
        self.calls = 0
        self.failures: list[str] = []
        self.versions: set[int] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.stub.Predict(self.request, timeout=10)
                with self.lock:
                    self.calls += 1
                    self.versions.add(reply.model_spec.version.value)
            except grpc.RpcError as exc:
                with self.lock:
                    self.calls += 1
                    self.failures.append(f"{exc.code()}: {exc.details()}")

    def wait_for_version(self, version: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if version in self.versions:
                    return
            time.sleep(0.05)
        raise AssertionError(f"version {version} never answered in {timeout} s: {self.versions}")

    def wait_calls(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        start = self.calls
        while self.calls < start + count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.calls >= start + count, f"only {self.calls - start} calls in {timeout} s"

    def __enter__(self) -> PredictLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
