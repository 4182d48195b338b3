"""servingd.wire: TF Serving's and TensorFlow's messages without the tensorflow package,
generated from protos/tf_serving_wire.binpb (scripts/wire_protos.py, `make protos`), and
able to live in one process with the official modules, in either import order."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from support.paths import REPO_ROOT

WIRE = REPO_ROOT / "src" / "servingd" / "wire"


def test_generated_modules_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "wire_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "servingd" / "wire"
    generated = sorted(p.relative_to(fresh) for p in fresh.rglob("*.py"))
    committed = sorted(p.relative_to(WIRE) for p in WIRE.rglob("*.py"))
    assert generated == committed, "src/servingd/wire is stale: run `make protos`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, WIRE, [str(p) for p in generated], shallow=False)
    assert not mismatch and not errors, f"stale: {mismatch or errors}; run `make protos`"


def _run(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


OURS = """
from servingd.wire.tensorflow_serving.apis import predict_pb2 as ours_predict
from servingd.wire.tensorflow_serving.apis import prediction_service_pb2_grpc
from servingd.wire.tensorflow.core.protobuf import meta_graph_pb2 as ours_meta
from servingd.wire.tensorflow_serving.config import model_server_config_pb2 as ours_config
"""
THEIRS = """
from tensorflow_serving.apis import predict_pb2 as their_predict
from tensorflow_serving.apis import prediction_service_pb2_grpc as their_service
from tensorflow.core.protobuf import meta_graph_pb2 as their_meta
from tensorflow_serving.config import model_server_config_pb2 as their_config
"""
CHECK = """
import sys
import tensorflow as tf
assert ours_predict.PredictRequest is their_predict.PredictRequest
assert ours_meta.SignatureDef is their_meta.SignatureDef
assert ours_config.ModelServerConfig is their_config.ModelServerConfig
request = ours_predict.PredictRequest()
request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))  # TF's TensorProto into ours
decoded = their_predict.PredictRequest.FromString(request.SerializeToString())
print(tf.make_ndarray(decoded.inputs["x"]).tolist())
"""


@pytest.mark.parametrize("first", ["ours", "theirs"])
def test_both_kinds_of_modules_share_one_pool(first: str) -> None:
    order = OURS + THEIRS if first == "ours" else THEIRS + OURS
    assert _run(order + CHECK).strip() == "[1.0, 2.0]"


def test_importing_the_wire_modules_does_not_import_tensorflow() -> None:
    code = OURS + "import sys\nprint(sorted(m for m in sys.modules if m.startswith('tensorflow')))"
    assert _run(code).strip() == "[]"


def test_every_file_is_the_official_modules_own() -> None:
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString((REPO_ROOT / "protos" / "tf_serving_wire.binpb").read_bytes())
    script = REPO_ROOT / "scripts" / "wire_descriptors.py"
    code = (
        "import importlib, runpy\n"
        f"for module in runpy.run_path({str(script)!r})['MODULES']:\n"
        "    importlib.import_module(module)\n"
        "from google.protobuf import descriptor_pool\n"
        f"for name in {[f.name for f in files.file]!r}:\n"
        "    print(descriptor_pool.Default().FindFileByName(name).serialized_pb.hex())\n"
    )
    official = _run(code).split()
    assert official == [f.SerializeToString().hex() for f in files.file]
