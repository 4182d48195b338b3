"""Bad versions at start: a corrupt newest version falls back to the one below, a version
that fails for a reason a retry may fix does not hold up READY or a reload, and a missing
base path is reported as the model's error.

One daemon for the module (run as `nobody` when the tests run as root, so that a root-only
file is unreadable to it, as in production), with a NOTIFY_SOCKET of the test's own:

    hpt     TF Serving's half_plus_two 123, and 124 = 123 with an empty saved_model.pb
    flaky   version 1 with an unreadable variables file (PERMISSION_DENIED: retried, every
            600 s, so the retry never comes during the test)
    ghost   a base path that does not exist
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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

from servingd.cli.main import main as servingctl
from support.models import copy_version
from support.notify_socket import NotifySocket
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
LOADING = get_model_status_pb2.ModelVersionStatus.LOADING
RUN_AS = "nobody" if os.geteuid() == 0 else ""
RETRY_INTERVAL_S = 600


@pytest.fixture(scope="module")
def root(testdata: Path) -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is mode 0700, closed to the daemon's user.
    path = Path(tempfile.mkdtemp(prefix="servingd-bad-versions-"))
    path.chmod(0o755)
    good = testdata / "saved_model_half_plus_two_2_versions/00000123"
    (path / "hpt").mkdir()
    copy_version(good, path / "hpt", 123)
    corrupt = copy_version(good, path / "hpt", 124)
    (corrupt / "saved_model.pb").write_bytes(b"")  # as a copy cut short would leave it
    (path / "flaky").mkdir()
    flaky = copy_version(good, path / "flaky", 1)
    for entry in path.rglob("*"):  # the daemon's user reads what a package would install
        entry.chmod(0o755 if entry.is_dir() else 0o644)
    (data,) = (flaky / "variables").glob("variables.data-*")
    data.chmod(stat.S_IRUSR | stat.S_IWUSR if RUN_AS else 0)
    write_config(path, ["hpt", "flaky", "ghost"])
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_config(root: Path, names: list[str]) -> None:
    configs = [f'config {{ name: "{n}" base_path: "{root / n}" }}' for n in names]
    text = "model_config_list {\n  " + "\n  ".join(configs) + "\n}\n"
    (root / "models.config").write_text(text)
    (root / "models.config").chmod(0o644)


@pytest.fixture(scope="module")
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    os.chmod(os.path.dirname(sock.path), 0o755)  # reachable by the daemon's user
    os.chmod(sock.path, 0o777)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def server(root: Path, notify: NotifySocket) -> Iterator[ServingdProcess]:
    with ServingdProcess(
        [
            f"--model_config_file={root / 'models.config'}",
            "--max_num_load_retries=5",
            f"--load_retry_interval_micros={RETRY_INTERVAL_S * 1_000_000}",
            "--version_settle_seconds=0.2",
            "--file_system_poll_wait_seconds=1",
            "--monitoring_config_file=" + str(monitoring_config(root)),
        ],
        run_as=RUN_AS,
        env=notify.env(),
    ) as process:
        yield process


def monitoring_config(root: Path) -> Path:
    path = root / "monitoring.config"
    path.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def ready(server: ServingdProcess, notify: NotifySocket) -> dict[str, str]:
    """The READY=1 message (the corrupt 124 and the failing flaky/1 must not hold it up)."""
    return notify.wait_for(lambda m: m.get("READY") == "1", 180)


def status(server: ServingdProcess, name: str) -> dict[int, Any]:
    stub = model_service_pb2_grpc.ModelServiceStub(server.channel())
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    reply = stub.GetModelStatus(request, timeout=10)
    return {s.version: s for s in reply.model_version_status}


def rest(server: ServingdProcess, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.rest_port}{path}", timeout=30
        ) as reply:
            body = reply.read()
            return reply.status, json.loads(body) if path != "/metrics" else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def servingctl_output(server: ServingdProcess, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = servingctl([f"--rest-url=http://127.0.0.1:{server.rest_port}", *args])
    return code, out.getvalue()


def test_corrupt_newest_version_at_start_serves_the_one_below(
    server: ServingdProcess, ready: dict[str, str]
) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32, shape=[2]))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    reply = stub.Predict(request, timeout=30)
    assert reply.model_spec.version.value == 123
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [2.5, 3.0])

    versions = status(server, "hpt")
    assert versions[123].state == AVAILABLE
    assert versions[124].state == END
    message = versions[124].status.error_message
    assert "124" in message and "MetaGraphDef" in message, message
    code, body = rest(server, "/v1/models/hpt")
    assert code == 200
    by_version = {s["version"]: s for s in body["model_version_status"]}
    assert by_version["124"]["status"]["error_message"] == message

    code, text = servingctl_output(server, "status")
    assert code == 0
    assert f"hpt: serving 123; 124 failed: {message}" in text, text
    code, metrics = rest(server, "/metrics")
    assert 'servingd_version_fallbacks_total{model_name="hpt"} 1.0' in metrics
    log = server.output()
    assert "version 124 failed to load" in log and "serving version 123 instead" in log
    # Retrying cannot fix an unparsable SavedModel: one attempt, no retry line.
    assert "Loading {name: hpt version: 124} failed, not retrying" in log
    assert "retry 1 of 5" not in "\n".join(
        line for line in log.splitlines() if "hpt version: 124" in line
    )


def test_ready_comes_and_says_which_models_do_not_serve(
    server: ServingdProcess, ready: dict[str, str]
) -> None:
    status_line = ready["STATUS"]
    assert "not serving: flaky (version 1 failed (LOADING)" in status_line, status_line
    assert "ghost (Base path" in status_line and "does not exist" in status_line
    flaky = status(server, "flaky")[1]
    assert flaky.state == LOADING  # waiting for its retry, READY did not wait for it
    assert "Permission denied" in flaky.status.error_message
    code, body = rest(server, "/readyz")
    assert code == 503
    assert body["models"] == {"hpt": True, "flaky": False, "ghost": False}
    assert "Permission denied" in body["not_serving"]["flaky"]
    assert "does not exist" in body["not_serving"]["ghost"]
    # The retry line carries the model's fields (journal fields under systemd).
    retry = [ln for ln in server.output().splitlines() if "retry 1 of 5" in ln]
    assert retry and "model_name=flaky model_version=1" in retry[0], retry


def test_missing_base_path_is_the_models_error(
    server: ServingdProcess, ready: dict[str, str], root: Path
) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        status(server, "ghost")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"Base path {root / 'ghost'} of model ghost does not exist" in str(
        missing.value.details()
    )
    _, text = servingctl_output(server, "status")
    # The versions table's row (the MODEL SOURCE section below it names ghost too).
    [row] = [ln for ln in text.splitlines() if ln.startswith("ghost ") and "NO VERSIONS" in ln]
    assert "does not exist" in row, text


def test_reload_adding_a_model_does_not_wait_for_retries(
    server: ServingdProcess, ready: dict[str, str], root: Path, testdata: Path
) -> None:
    (root / "added").mkdir(mode=0o755)
    added = copy_version(
        testdata / "saved_model_half_plus_two_2_versions/00000123", root / "added", 7
    )
    for entry in [added, *added.rglob("*")]:
        entry.chmod(0o755 if entry.is_dir() else 0o644)
    write_config(root, ["hpt", "flaky", "ghost", "added"])
    assert server.proc is not None
    started = time.monotonic()
    code, _ = servingctl_output(server, "reload", f"--pid={server.proc.pid}", "--timeout=120")
    elapsed = time.monotonic() - started
    assert code == 0
    assert status(server, "added")[7].state == AVAILABLE
    # flaky/1 still waits for its retry: the reload did not wait for it (nor did the load
    # of "added" wait for a load thread).
    assert status(server, "flaky")[1].state == LOADING
    assert elapsed < RETRY_INTERVAL_S
