"""Broken configuration files, on start and on reload: refused whole, with file:line.

One table of broken servingd.yaml / models.d / models.config files. Each case is tried
  - on start: the real `servingd --config=...` exits 1 and names FILE:LINE and the cause;
  - on SIGHUP (`servingctl reload`) against one running daemon: the reload is refused
    (exit 1; GET /v1/servingd/reload says "refused" with FILE:LINE), every model keeps
    serving, and a later valid reload is applied.
As root the daemon runs as `nobody` (as servingd runs as its own user), so a mode-000 file
is unreadable to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from servingd.cli.main import main as servingctl
from support.servingd_process import ServingdProcess, servingd_command

RUN_AS = "nobody" if os.geteuid() == 0 else ""
MODELS_CONFIG = 'model_config_list {\n  config { name: "three" base_path: "%s" }\n}\n'


def base_yaml(testdata: Path) -> str:
    return (
        "models_dir: models.d\n"
        "model_config_file: models.config\n"
        f"model_root: {testdata}\n"
        "logging: {level: info, target: stderr}\n"
    )  # 4 lines: a case appending to it starts on line 5


@dataclass(frozen=True)
class Case:
    """Files to write (relative to the etc dir; servingd.yaml's text is appended to the
    base), the file and line the error must name, and words of the cause."""

    id: str
    files: dict[str, str | bytes]
    where: str
    line: int | None
    cause: str
    mode: int | None = None  # chmod for `where`
    extra: dict[str, str] = field(default_factory=dict)


CASES = [
    Case(
        "yaml_syntax", {"servingd.yaml": "grpc: {port: 8500\n"}, "servingd.yaml", 6, "invalid YAML"
    ),
    Case(
        "unknown_key",
        {"servingd.yaml": "drain_grace_secnds: 5\n"},
        "servingd.yaml",
        5,
        "unknown key 'drain_grace_secnds'",
    ),
    Case(
        "wrong_type",
        {"servingd.yaml": "limits:\n  max_in_flight_requests: many\n"},
        "servingd.yaml",
        6,
        "limits.max_in_flight_requests must be an integer",
    ),
    Case(
        "duplicate_key",
        {"servingd.yaml": "models_dir: elsewhere\n"},
        "servingd.yaml",
        5,
        "duplicate key 'models_dir'",
    ),
    Case(
        "bad_tls_file",
        {
            "servingd.yaml": "rest: {ssl_config_file: tls.pbtxt}\n",
            "tls.pbtxt": 'server_key: "/etc/k.pem"\nserver_cert: "/etc/c.pem"\n',
        },
        "tls.pbtxt",
        None,
        "must hold PEM text",
    ),
    Case(
        "duplicate_model",
        {"models.d/dup.yaml": "name: hp\nbase_path: saved_model_half_plus_three\n"},
        "models.d/hp.yaml",  # drop-ins are read in name order: the second one is named
        1,
        "model 'hp' is defined twice",
    ),
    Case(
        "duplicate_model_across_files",
        {"models.d/three.yaml": "base_path: saved_model_half_plus_three\n"},
        "models.d/three.yaml",
        1,
        "model 'three' is defined twice",
    ),
    Case(
        "missing_base_path",
        {"models.d/nobase.yaml": "name: nobase\nplatform: tensorflow\n"},
        "models.d/nobase.yaml",
        1,
        "base_path is required",
    ),
    Case(
        "bad_version_policy",
        {"models.d/policy.yaml": "base_path: x\nversion_policy:\n  latest: {num_versions: 0}\n"},
        "models.d/policy.yaml",
        3,
        "num_versions must be >= 1",
    ),
    Case(
        "bad_batching",
        {"models.d/batch.yaml": "base_path: x\nbatching:\n  max_batch_sise: 8\n"},
        "models.d/batch.yaml",
        3,
        "unknown key 'max_batch_sise'",
    ),
    Case(
        "bad_label",
        {"models.d/label.yaml": "base_path: x\nversion_labels:\n  stable: one\n"},
        "models.d/label.yaml",
        3,
        "version label 'stable' must be an integer",
    ),
    Case(
        "unreadable_file",
        {"models.d/secret.yaml": "base_path: x\n"},
        "models.d/secret.yaml",
        None,
        "cannot read: Permission denied",
        mode=0,
    ),
    Case(
        "not_utf8",
        {"models.d/latin1.yaml": b"name: caf\xe9\nbase_path: x\n"},
        "models.d/latin1.yaml",
        None,
        "not UTF-8",
    ),
    Case(
        "models_config_syntax",
        {"models.config": 'model_config_list {\n  config { name: "three" base_pth: "x" }\n}\n'},
        "models.config",
        2,
        "Error parsing text-format tensorflow.serving.ModelServerConfig: 2:",
    ),
    Case(
        "models_config_missing",
        {"servingd.yaml": ""},
        "gone.config",
        None,
        "cannot read",
        extra={"model_config_file": "gone.config"},
    ),
]


def make_etc(root: Path, testdata: Path) -> Path:
    """A valid etc dir: hp from models.d, three from models.config."""
    etc = Path(tempfile.mkdtemp(prefix="etc-", dir=root))
    (etc / "models.d").mkdir()
    (etc / "servingd.yaml").write_text(base_yaml(testdata))
    (etc / "models.d/hp.yaml").write_text("base_path: saved_model_half_plus_two_cpu\n")
    (etc / "models.config").write_text(MODELS_CONFIG % (testdata / "saved_model_half_plus_three"))
    open_up(etc)
    return etc


def open_up(etc: Path) -> None:
    """Readable by the daemon's user (what a package installs: 0755 dirs, 0644 files)."""
    for path in [etc, *etc.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def apply(case: Case, etc: Path, testdata: Path) -> str:
    """Writes the case's files into `etc`; returns the FILE:LINE the error must name."""
    for name, text in case.files.items():
        path = etc / name
        if name == "servingd.yaml":
            base = base_yaml(testdata)
            for key, value in case.extra.items():
                base = "\n".join(
                    f"{key}: {value}" if line.startswith(f"{key}:") else line
                    for line in base.splitlines()
                )
                base += "\n"
            text = base + str(text)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    open_up(etc)
    where = etc / case.where
    if case.mode is not None:
        where.chmod(case.mode)
    return f"{where}:{case.line}:" if case.line is not None else f"{where}:"


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is mode 0700, closed to the daemon's user.
    path = Path(tempfile.mkdtemp(prefix="servingd-configs-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def prefix() -> list[str]:
    return ServingdProcess([], run_as=RUN_AS).prefix


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_on_start(case: Case, root: Path, testdata: Path) -> None:
    etc = make_etc(root, testdata)
    where = apply(case, etc, testdata)
    result = subprocess.run(
        [*prefix(), *servingd_command(), f"--config={etc / 'servingd.yaml'}", "--port=0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    assert result.returncode == 1, result.stderr
    refused = [line for line in result.stderr.splitlines() if "configuration refused" in line]
    assert refused, result.stderr
    assert where in refused[0] and case.cause in refused[0], refused[0]


def test_the_valid_base_starts(root: Path, testdata: Path) -> None:
    """The table's base configuration itself is valid: each case breaks only its files."""
    etc = make_etc(root, testdata)
    result = subprocess.run(
        [*prefix(), *servingd_command(), f"--config={etc / 'servingd.yaml'}", "--check-config"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def live(root: Path, testdata: Path) -> Iterator[tuple[ServingdProcess, Path]]:
    etc = make_etc(root, testdata)
    with ServingdProcess([f"--config={etc / 'servingd.yaml'}"], run_as=RUN_AS) as server:
        server.wait_healthy()
        yield server, etc


def reload_state(server: ServingdProcess) -> dict[str, object]:
    url = f"http://127.0.0.1:{server.rest_port}/v1/servingd/reload"
    with urllib.request.urlopen(url, timeout=10) as reply:
        state: dict[str, object] = json.loads(reply.read())
        return state


def assert_serving(server: ServingdProcess) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    for name, expected in (("hp", [2.5, 3.0]), ("three", [3.5, 4.0])):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
        reply = stub.Predict(request, timeout=30)
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), expected)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_on_reload(case: Case, live: tuple[ServingdProcess, Path], testdata: Path) -> None:
    server, etc = live
    originals = {p: p.read_bytes() for p in etc.rglob("*") if p.is_file()}
    ctl = [f"--config={etc / 'servingd.yaml'}", f"--rest-url=http://127.0.0.1:{server.rest_port}"]
    try:
        where = apply(case, etc, testdata)
        assert servingctl([*ctl, "reload", "--timeout=120"]) == 1
        state = reload_state(server)
        assert state["result"] == "refused", state
        assert where in str(state["message"]) and case.cause in str(state["message"]), state
        assert_serving(server)  # nothing dropped: the running config stays
        assert f"configuration refused, the running one stays: {where}" in server.output()
    finally:
        for path in etc.rglob("*"):
            if path.is_file() and path not in originals:
                path.chmod(0o644)
                path.unlink()
        for path, data in originals.items():
            path.write_bytes(data)
    assert servingctl([*ctl, "reload", "--timeout=120"]) == 0
    assert reload_state(server)["result"] == "ok"
    assert_serving(server)
    server.assert_running()
