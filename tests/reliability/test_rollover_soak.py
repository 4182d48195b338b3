"""Rollover soak: many version swaps of a model under constant load from 16 clients.

Every request must succeed with the right answer, and each client must see versions only
move forward (a clean switch: never back to an older version once a newer one answered).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from integration.test_grpc_predict import predict_request, wait_for
from reliability.conftest import soak_count
from support.models import copy_version
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

CLIENTS = 16


def test_rollover_soak(testdata: Path, tmp_path: Path, figure: Callable[..., str]) -> None:
    swaps = soak_count(10, 50)
    source = testdata / "saved_model_half_plus_two_2_versions" / "00000123"
    base = tmp_path / "half_plus_two"
    base.mkdir()
    copy_version(source, base, 1)
    with ServingdProcess(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=1",
            "--version_settle_seconds=0.2",
        ],
        rest=False,
    ) as server:
        server.wait_healthy()
        channels = [grpc.insecure_channel(server.grpc_target) for _ in range(4)]
        stop = threading.Event()
        failures: list[str] = []
        backwards: list[str] = []
        counts = [0] * CLIENTS
        latest = [0] * CLIENTS

        def client(index: int) -> None:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channels[index % 4])
            while not stop.is_set():
                try:
                    reply = stub.Predict(predict_request("half_plus_two", [1.0, 5.0]), timeout=30)
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")
                    continue
                counts[index] += 1
                version = reply.model_spec.version.value
                if version < latest[index]:
                    backwards.append(f"client {index}: {latest[index]} -> {version}")
                latest[index] = version
                got = tf.make_ndarray(reply.outputs["y"]).ravel().tolist()
                if got != [2.5, 4.5]:
                    failures.append(f"wrong answer {got}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        start = time.monotonic()
        try:
            for version in range(2, swaps + 2):
                copy_version(source, base, version)
                wait_for(lambda v=version: min(latest) >= v, 120, f"every client on {version}")
                shutil.rmtree(base / str(version - 1))  # the old one is unloaded by now
        finally:
            stop.set()
            for t in threads:
                t.join(60)
            for channel in channels:
                channel.close()
        elapsed = time.monotonic() - start
        requests = sum(counts)
        figure(
            "rollover_soak",
            swaps=swaps,
            clients=CLIENTS,
            requests=requests,
            failures=len(failures),
            out_of_order=len(backwards),
            seconds=f"{elapsed:.0f}",
        )
        assert failures == [], failures[:5]
        assert backwards == [], backwards[:5]
        assert requests > swaps * CLIENTS
        assert server.output().count("Traceback") == 0
