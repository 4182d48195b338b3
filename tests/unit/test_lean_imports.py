"""Everything a daemon serving only TF Lite models runs imports no TensorFlow: the daemon,
its gRPC and REST front ends, config, batching, the TF Lite servable, warmup and the
tf.Example APIs (TensorFlow comes with servables.saved_model, imported for the first
SavedModel version)."""

from __future__ import annotations

import os
import subprocess
import sys

from support.paths import REPO_ROOT

LEAN_MODULES = (
    "servingd.daemon.main",
    "servingd.daemon.service",
    "servingd.daemon.model_server",
    "servingd.cli.main",
    "servingd.apis.grpc.server",
    "servingd.apis.rest.server",
    "servingd.servables.tflite",
    "servingd.servables.warmup",
    "servingd.servables.tf_example",
    "servingd.config.load",
)


def test_the_daemon_and_the_tflite_path_import_no_tensorflow() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {LEAN_MODULES!r}: importlib.import_module(m)\n"
        "heavy = ('tensorflow', 'tensorflow_serving', 'keras')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "                      or m == 'servingd.servables.saved_model')))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == ""
