"""Leak check: load/unload cycles of the MLP model; the server's RSS after vs before.

Each cycle is one HandleReloadConfigRequest that switches the served version (specific
version policy, 1 <-> 2): one SavedModel load and one unload. A cycle ends when the new
version answered and the old one reached END.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from integration.test_grpc_predict import wait_for
from reliability.conftest import soak_count
from servingd.tools.export_models import export_mlp
from support.proc_threads import resident_bytes
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

WARMUP_CYCLES = 5
END = get_model_status_pb2.ModelVersionStatus.END
MAX_GROWTH = 0.05


def reload_request(base: Path, version: int) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name = "mlp"
    config.base_path = str(base)
    config.model_platform = "tensorflow"
    config.model_version_policy.specific.versions.append(version)
    return request


def unloaded(models: model_service_pb2_grpc.ModelServiceStub, version: int) -> bool:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "mlp"
    states = models.GetModelStatus(request, timeout=10).model_version_status
    return all(s.state == END for s in states if s.version == version)


def predict(stub: prediction_service_pb2_grpc.PredictionServiceStub, version: int) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mlp"
    request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((4, 784), np.float32)))
    reply = stub.Predict(request, timeout=30)
    assert reply.model_spec.version.value == version


def test_load_unload_cycles_do_not_leak(tmp_path: Path, figure: Callable[..., str]) -> None:
    cycles = soak_count(20, 100)
    base = tmp_path / "mlp"
    export_mlp(base / "1")
    shutil.copytree(base / "1", base / "2")
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "mlp" base_path: "{base}" '
        'model_platform: "tensorflow" model_version_policy { specific { versions: 1 } } } }\n'
    )
    with ServingdProcess([f"--model_config_file={config}"], rest=False) as server:
        server.wait_healthy()
        assert server.proc is not None
        models = model_service_pb2_grpc.ModelServiceStub(server.channel())
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        version = 1

        def cycle() -> None:
            nonlocal version
            version = 3 - version
            models.HandleReloadConfigRequest(reload_request(base, version), timeout=120)
            predict(stub, version)
            wait_for(lambda: unloaded(models, 3 - version), 60, "the old version to unload")

        for _ in range(WARMUP_CYCLES):  # allocator pools and TF's caches reach their size
            cycle()
        before = resident_bytes(server.proc.pid)
        start = time.monotonic()
        for _ in range(cycles):
            cycle()
        after = resident_bytes(server.proc.pid)
        growth = (after - before) / before
        figure(
            "leak_check",
            cycles=cycles,
            rss_before_mib=f"{before / 2**20:.1f}",
            rss_after_mib=f"{after / 2**20:.1f}",
            growth_pct=f"{growth * 100:.2f}",
            target_pct=f"{MAX_GROWTH * 100:.0f}",
            seconds=f"{time.monotonic() - start:.0f}",
        )
        assert growth <= MAX_GROWTH, f"RSS grew {growth:.1%} over {cycles} load/unload cycles"
