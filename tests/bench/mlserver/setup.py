"""The peer: Seldon MLServer in its own virtualenv, serving the bench's models.

`ensure_venv` creates build/bench/mlserver-venv with pip on first use (MLServer and the
same TensorFlow release as ours; its pins never touch the project's venv) and reuses it
afterwards. `MLServer.start` writes MLServer's settings and the model's settings (the
custom runtime in savedmodel_runtime.py) and runs `mlserver start` on 127.0.0.1 ports.
MLServer's settings are its defaults (one parallel inference worker process, no adaptive
batching) apart from ports and the model.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench.mlserver")

MLSERVER_SPEC = "mlserver==1.7.*"
# MLServer 1.7.1's inference workers call asyncio.get_event_loop() outside a running loop,
# which uvloop >= 0.22 refuses ("There is no current event loop"): every worker dies at
# start and is restarted forever. The last uvloop that allows it is MLServer's to need.
EXTRA_PINS = ("uvloop<0.22",)
RUNTIME_DIR = Path(__file__).resolve().parent
INSTALL_TIMEOUT_S = 900


def _tf_version() -> str:
    from importlib.metadata import version

    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return version(dist)
        except Exception:
            continue
    return ""


def ensure_venv(out_dir: Path) -> tuple[Path | None, str]:
    """(venv, "") when MLServer can be imported there; else (None, why not)."""
    venv = out_dir / "mlserver-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import mlserver, tensorflow, uvloop; "
             "assert tuple(map(int, uvloop.__version__.split('.')[:2])) < (0, 22)"]  # fmt: skip
    if python.exists() and subprocess.run(check, capture_output=True, timeout=120).returncode == 0:
        return venv, ""
    out_dir.mkdir(parents=True, exist_ok=True)
    tf = _tf_version()
    packages = [MLSERVER_SPEC, f"tensorflow-cpu=={tf}" if tf else "tensorflow-cpu", *EXTRA_PINS]
    log.info("installing %s into %s (once; cached)", " ".join(packages), venv)
    install_log = out_dir / "mlserver-install.log"
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120
        )
        with install_log.open("w") as f:
            done = subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", *packages],
                stdout=f, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S,
            )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create the MLServer virtualenv: {exc}"
    if done.returncode != 0:
        tail = install_log.read_text(errors="replace").strip().splitlines()[-3:]
        return None, f"pip install {' '.join(packages)} failed: {' / '.join(tail)}"
    if subprocess.run(check, capture_output=True, timeout=120).returncode != 0:
        return None, "MLServer installed but `import mlserver, tensorflow` fails in its venv"
    return venv, ""


class MLServer:
    """One `mlserver start` process serving each of `models` (name -> version directory)
    under its name, V2 gRPC loads at 8 clients."""

    def __init__(self, venv: Path, work: Path, models: dict[str, Path]) -> None:
        self.venv = venv
        self.dir = work / "mlserver"
        self.models = models
        self.version = ""

    def describe(self) -> str:
        return (
            f"MLServer {self.version} (defaults: parallel_workers=1, no adaptive batching), "
            "custom runtime tests/bench/mlserver/savedmodel_runtime.py, V2 gRPC"
        )

    def _grpc_body(self, model: str) -> Path:
        """A serialized V2 ModelInferRequest of one row (the same inputs as the servingd
        request, tests/bench/models.py), built with MLServer's own protos."""
        from tests.bench import models as bench_models

        bench_model = bench_models.MODELS[model]
        row = np.asarray(bench_model.rows(1))
        data = self.dir / f"{model}-row.npy"
        np.save(data, row)
        path = self.dir / f"v2grpc-{model}.bin"
        script = (
            "import sys, numpy as np\n"
            "from mlserver.grpc import dataplane_pb2 as pb\n"
            "x = np.load(sys.argv[1])\n"
            f"r = pb.ModelInferRequest(model_name={model!r})\n"
            "kind = 'INT32' if x.dtype == np.int32 else 'FP32'\n"
            f"t = r.inputs.add(name={bench_model.input_name!r}, datatype=kind, shape=x.shape)\n"
            "field = t.contents.int_contents if kind == 'INT32' else t.contents.fp32_contents\n"
            "field.extend(x.ravel().tolist())\n"
            "open(sys.argv[2], 'wb').write(r.SerializeToString())\n"
        )
        python = str(self.venv / "bin" / "python")
        subprocess.run([python, "-c", script, str(data), str(path)], check=True, timeout=120)
        return path

    def start(self) -> tuple[Any, Callable[[], None]]:
        from support.servingd_process import free_ports
        from tests.bench import procs
        from tests.bench.run import V2_INFER, Load, Server

        self.dir.mkdir(parents=True, exist_ok=True)
        http, grpc_port, metrics = free_ports(3)
        (self.dir / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": http,
                    "grpc_port": grpc_port,
                    "metrics_port": metrics,
                    "debug": False,
                }
            )
        )
        for name, version_dir in self.models.items():
            model = self.dir / name
            model.mkdir(exist_ok=True)
            (model / "model-settings.json").write_text(
                json.dumps(
                    {
                        "name": name,
                        "implementation": "savedmodel_runtime.SavedModelRuntime",
                        "parameters": {"uri": str(version_dir)},
                    }
                )
            )
        python = self.venv / "bin" / "python"
        self.version = subprocess.run(
            [str(python), "-c", "import mlserver; print(mlserver.__version__)"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout.strip()  # fmt: skip
        grpc_bodies = {name: self._grpc_body(name) for name in self.models}
        env = {"PYTHONPATH": str(RUNTIME_DIR), "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin"}
        logfile = (self.dir / "mlserver.log").open("wb")
        proc = subprocess.Popen(
            [str(self.venv / "bin" / "mlserver"), "start", str(self.dir)],
            stdout=logfile, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
        )  # fmt: skip

        def stop() -> None:
            procs.stop(proc)
            logfile.close()

        ready = f"http://127.0.0.1:{http}/v2/health/ready"  # every model loaded
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop()
                tail = (self.dir / "mlserver.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"MLServer did not become ready; log tail:\n{tail}")
            try:
                with urllib.request.urlopen(ready, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        g = f"127.0.0.1:{grpc_port}"
        loads = [
            Load(f"gRPC {name}", 8, body, grpc=g, method=V2_INFER)
            for name, body in grpc_bodies.items()
        ]
        return Server("MLServer", proc.pid, loads), stop
