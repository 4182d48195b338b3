"""The project's own test data: TF Serving's test-model layout, exported by servingd's code.

The tree has the folder and file names of TF Serving's testdata (version 123, and 124 for
the two-version model), so a test reads either tree the same way:

    saved_model_half_plus_two_cpu/00000123       TF1 half_plus_two, example signatures, asset
    saved_model_half_plus_two_tf2_cpu/00000123   the TF2 export
    saved_model_half_plus_three/00000123         y = 0.5x + 3
    saved_model_half_plus_two_2_versions/{00000123,00000124}
    saved_model_counter/00000123                 TF1 stateful model, reference variable
    good_model_config.txt, bad_model_config.txt, batching_config.txt, monitoring_config.txt

It is exported once per content of the exporters and cached under build/testdata/<key>
(written into a hidden directory, then renamed: concurrent runs never see half a tree).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from servingd.tools import export_models, reference_models
from support.paths import REPO_ROOT

CACHE_ROOT = REPO_ROOT / "build" / "testdata"

MODELS: dict[str, Callable[[str | Path], Path]] = {
    "saved_model_half_plus_two_cpu/00000123": reference_models.export_half_plus_two_tf1,
    "saved_model_half_plus_two_tf2_cpu/00000123": reference_models.export_half_plus_two_tf2,
    "saved_model_half_plus_three/00000123": reference_models.export_half_plus_three,
    "saved_model_half_plus_two_2_versions/00000123": reference_models.export_half_plus_two_tf1,
    "saved_model_half_plus_two_2_versions/00000124": reference_models.export_half_plus_two_tf1,
    "saved_model_counter/00000123": reference_models.export_counter,
}

# ModelServerConfig with the placeholders TF Serving's own good_model_config.txt uses.
GOOD_MODEL_CONFIG = """\
model_config_list {
  config {
    name: "half_plus_two"
    base_path: "${TEST_HALF_PLUS_TWO_DIR}"
    model_platform: "tensorflow"
  }
  config {
    name: "half_plus_three"
    base_path: "${TEST_HALF_PLUS_THREE_DIR}"
    model_platform: "tensorflow"
  }
}
"""


def _tensor(name: str, dtype: str, dims: tuple[int, ...] | None) -> dict[str, object]:
    if dims is None:
        shape: dict[str, object] = {"dim": [], "unknown_rank": True}
    else:
        shape = {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}
    return {"dtype": dtype, "tensor_shape": shape, "name": name}


def _signature(inputs: dict[str, object], outputs: dict[str, object], method: str) -> object:
    return {
        "inputs": inputs,
        "outputs": outputs,
        "method_name": f"tensorflow/serving/{method}",
        "defaults": {},
    }


def half_plus_two_metadata() -> dict[str, object]:
    """GET /v1/models/half_plus_two/metadata of saved_model_half_plus_two_cpu, as TF Serving
    answers it (model_spec.name is the served name; TF Serving's file says "default")."""
    column = (-1, 1)
    examples = {"inputs": _tensor("tf_example:0", "DT_STRING", None)}

    def floats(name: str) -> dict[str, object]:
        return _tensor(name, "DT_FLOAT", column)

    signatures = {
        "serving_default": _signature({"x": floats("x:0")}, {"y": floats("y:0")}, "predict"),
        "classify_x_to_y": _signature(examples, {"scores": floats("y:0")}, "classify"),
        "regress_x_to_y": _signature(examples, {"outputs": floats("y:0")}, "regress"),
        "regress_x_to_y2": _signature(examples, {"outputs": floats("y2:0")}, "regress"),
        "regress_x2_to_y3": _signature(
            {"inputs": floats("x2:0")}, {"outputs": floats("y3:0")}, "regress"
        ),
    }
    return {
        "model_spec": {"name": "default", "signature_name": "", "version": "123"},
        "metadata": {"signature_def": {"signature_def": signatures}},
    }


TEXT_FILES = {
    "half_plus_two_model_metadata.json": json.dumps(half_plus_two_metadata(), indent=1),
    "good_model_config.txt": GOOD_MODEL_CONFIG,
    "bad_model_config.txt": "this is no ModelServerConfig {",
    "batching_config.txt": (
        "max_batch_size { value: 128 }\n"
        "batch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 1000000 }\n"
        "num_batch_threads { value: 8 }\n"
    ),
    "monitoring_config.txt": (
        'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'
    ),
}


def cache_key() -> str:
    """Changes whenever what the tree would contain can change."""
    import tensorflow as tf

    digest = hashlib.sha256(tf.__version__.encode())
    for module in (reference_models, export_models):
        digest.update(Path(str(module.__file__)).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def build_tree(root: Path) -> Path:
    """Writes the whole tree into `root` (which must not exist yet)."""
    for relative, export in MODELS.items():
        export(root / relative)
    for name, text in TEXT_FILES.items():
        (root / name).write_text(text)
    return root


def project_testdata() -> Path:
    """The cached tree, built first if this content has none yet."""
    target = CACHE_ROOT / cache_key()
    if target.is_dir():
        return target
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=CACHE_ROOT))
    try:
        build_tree(staging / "tree")
        try:
            (staging / "tree").rename(target)
        except OSError:
            if not target.is_dir():  # another run finished first: its tree is the same
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
