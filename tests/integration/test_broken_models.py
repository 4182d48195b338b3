"""Broken model versions on a running daemon: each one is reported with its cause, and the
last good version keeps serving.

One daemon for the module, serving four models from a TF Serving models.config, each with a
good version 123 (half_plus_two, TF1 export). A test breaks one model's version 124 in one
way (no variables, a directory that vanishes during the load, files the daemon may not
read) and checks GetModelStatus, REST status and the log; a fifth model raises at run time
for some inputs. As root the daemon runs as `nobody`, so a root-only file is unreadable to
it as it is in production (servingd runs as its own user); otherwise a mode-000 file is.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from support.models import copy_version
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
LOADING = get_model_status_pb2.ModelVersionStatus.LOADING
BROKEN = ("no_variables", "vanishing", "unreadable")
RUN_AS = "nobody" if os.geteuid() == 0 else ""


def export_checked(path: Path) -> Path:
    """y = x / 2 + 2 for x >= 0; a negative x fails tf.debugging.assert_non_negative."""

    class Checked(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            check = tf.debugging.assert_non_negative(x, message="x must be >= 0")
            with tf.control_dependencies([check]):
                return {"y": x / 2 + 2}

    module = Checked()
    tf.saved_model.save(module, str(path / "1"), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is mode 0700, closed to the daemon's user.
    path = Path(tempfile.mkdtemp(prefix="servingd-broken-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(testdata: Path, root: Path) -> Iterator[ServingdProcess]:
    good = testdata / "saved_model_half_plus_two_2_versions/00000123"
    configs = []
    for name in BROKEN:
        (root / name).mkdir()
        copy_version(good, root / name, 123)
        configs.append(f'config {{ name: "{name}" base_path: "{root / name}" }}')
    export_checked(root / "checked")
    configs.append(f'config {{ name: "checked" base_path: "{root / "checked"}" }}')
    for path in root.rglob("*"):  # the daemon's user reads what a package would install
        path.chmod(0o755 if path.is_dir() else 0o644)
    models_config = root / "models.config"
    models_config.write_text("model_config_list {\n  " + "\n  ".join(configs) + "\n}\n")
    with ServingdProcess(
        [
            f"--model_config_file={models_config}",
            "--max_num_load_retries=0",
            "--version_settle_seconds=0.2",
            "--file_system_poll_wait_seconds=1",
        ],
        run_as=RUN_AS,
    ) as process:
        process.wait_healthy()
        yield process


def status(server: ServingdProcess, name: str) -> dict[int, Any]:
    stub = model_service_pb2_grpc.ModelServiceStub(server.channel())
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    reply = stub.GetModelStatus(request, timeout=10)
    return {s.version: s for s in reply.model_version_status}


def rest(server: ServingdProcess, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}{path}",
        data=None if body is None else json.dumps(body).encode(),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def predict(server: ServingdProcess, name: str, xs: list[float]) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(xs, dtype=tf.float32, shape=[len(xs)]))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    return stub.Predict(request, timeout=30)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def failed_load(server: ServingdProcess, name: str) -> str:
    """Waits for version 124 of `name` to end with an error; checks every view of it and
    that 123 still serves. Returns the error message."""

    def ended() -> bool:
        version = status(server, name).get(124)
        return version is not None and version.state == END and version.status.error_code != 0

    wait_for(ended, 60, f"{name} version 124 to fail")
    versions = status(server, name)
    message = str(versions[124].status.error_message)
    assert name in message and "124" in message, message
    assert versions[123].state == AVAILABLE
    reply = predict(server, name, [1.0, 2.0])
    assert reply.model_spec.version.value == 123
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [2.5, 3.0])
    code, body = rest(server, f"/v1/models/{name}")
    assert code == 200, body
    by_version = {s["version"]: s for s in body["model_version_status"]}
    assert by_version["124"]["state"] == "END"
    assert by_version["124"]["status"]["error_message"] == message
    assert by_version["123"]["state"] == "AVAILABLE"
    wait_for(lambda: message in server.output(), 10, "the error in the log")
    return message


def new_version(testdata: Path, base: Path) -> Path:
    """Version 124 staged (not yet visible to the daemon): rename it into place to publish."""
    staging = base / ".staging-124"
    shutil.copytree(testdata / "saved_model_half_plus_two_2_versions/00000124", staging)
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return staging


def test_missing_variables(server: ServingdProcess, testdata: Path, root: Path) -> None:
    staging = new_version(testdata, root / "no_variables")
    shutil.rmtree(staging / "variables")
    staging.rename(root / "no_variables/124")
    message = failed_load(server, "no_variables")
    assert "variables" in message, message


def test_version_directory_vanishing_during_the_load(
    server: ServingdProcess, testdata: Path, root: Path
) -> None:
    # The variables' data file is a FIFO, so the load cannot finish until the test opens
    # it for writing: once the version is LOADING the directory is deleted, mid-load every
    # time. Then the FIFO (still reachable through a hard link outside the version) is
    # opened and closed, so a loader blocked opening it goes on and fails.
    staging = new_version(testdata, root / "vanishing")
    (data,) = (staging / "variables").glob("variables.data-*")
    data.unlink()
    os.mkfifo(data)
    os.chmod(data, 0o666)  # not narrowed by the umask
    link = root / "vanishing-fifo"
    os.link(data, link)
    version = root / "vanishing/124"
    staging.rename(version)

    def loading() -> bool:
        found = status(server, "vanishing").get(124)
        return found is not None and found.state == LOADING

    wait_for(loading, 60, "version 124 to start loading")
    shutil.rmtree(version)

    def unblocked() -> bool:
        try:
            os.close(os.open(link, os.O_WRONLY | os.O_NONBLOCK))
            return True
        except OSError:  # ENXIO: no reader (the loader failed before opening it)
            return status(server, "vanishing")[124].state == END

    wait_for(unblocked, 60, "the loader to open the variables or fail")
    message = failed_load(server, "vanishing")
    assert "disappeared during the load" in message, message
    link.unlink()


def test_permission_denied(server: ServingdProcess, testdata: Path, root: Path) -> None:
    staging = new_version(testdata, root / "unreadable")
    (data,) = (staging / "variables").glob("variables.data-*")
    # Root-owned 0600 is unreadable to `nobody`; when not root, 0000 is unreadable to us.
    data.chmod(stat.S_IRUSR | stat.S_IWUSR if RUN_AS else 0)
    staging.rename(root / "unreadable/124")
    message = failed_load(server, "unreadable")
    assert "Permission denied" in message or "PERMISSION_DENIED" in message, message


def test_model_raising_at_run_time_stays_loaded(server: ServingdProcess) -> None:
    for _ in range(3):  # bad and good inputs interleaved: the model keeps answering
        with pytest.raises(grpc.RpcError) as bad:
            predict(server, "checked", [1.0, -1.0])
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "x must be >= 0" in str(bad.value.details())
        code, body = rest(server, "/v1/models/checked:predict", {"instances": [3.0, -3.0]})
        assert code == 400 and "x must be >= 0" in body["error"], body
        reply = predict(server, "checked", [2.0, 4.0])
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [3.0, 4.0])
    assert status(server, "checked")[1].state == AVAILABLE
    server.assert_running()
