"""TF Lite's settings, its choice of runtime per version, its signatures and the delegate check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servingd.config.errors import ConfigError
from servingd.config.flags import not_applicable_flags, parse_flags
from servingd.config.load import load_settings
from servingd.config.models import ModelConfig
from servingd.config.settings import ServerSettings, settings_from_flags
from servingd.core import errors
from servingd.daemon.checks import check_machine
from servingd.servables.delegates import EDGETPU_LIBRARY, delegate_library
from servingd.servables.protos import meta_graph_pb2, types_pb2
from servingd.servables.tflite import build_signature_defs, loads_as_tflite
from unit.test_config_files import refused, write


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    write(tmp_path / "servingd.yaml", "grpc: {port: 8600}\nmodels_dir: models.d\n")
    (tmp_path / "models.d").mkdir()
    return tmp_path


def test_tflite_flags_reach_the_settings_and_are_applicable() -> None:
    args = parse_flags(
        ["--model_base_path=/m", "--prefer_tflite_model", "--num_tflite_pools=2",
         "--num_tflite_interpreters_per_pool=3"]
    )  # fmt: skip
    assert not_applicable_flags(args) == {}
    settings = settings_from_flags(args)
    assert settings.prefer_tflite_model
    assert (settings.num_tflite_pools, settings.num_tflite_interpreters_per_pool) == (2, 3)
    with pytest.raises(ConfigError, match="--num_tflite_pools must be at least 1"):
        settings_from_flags(parse_flags(["--model_base_path=/m", "--num_tflite_pools=0"]))


def test_drop_in_tflite_keys(etc: Path) -> None:
    write(
        etc / "models.d/edge.yaml",
        "base_path: edge\nplatform: tflite\ninterpreters: 2\nthreads: 1\ndelegate: edgetpu\n"
        "xnnpack: false\n",
    )
    write(etc / "servingd.yaml", (etc / "servingd.yaml").read_text() + "tflite: {num_pools: 3}\n")
    settings = load_settings([f"--config={etc / 'servingd.yaml'}"])
    edge = {m.name: m for m in settings.models}["edge"]
    assert (edge.platform, edge.interpreters, edge.threads, edge.delegate, edge.xnnpack) == (
        "tflite", 2, 1, "edgetpu", False,
    )  # fmt: skip
    assert settings.num_tflite_pools == 3


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("base_path: e\nplatform: onnx\n", 2, "platform 'onnx' is not supported"),
        ("base_path: e\ninterpreters: 0\n", 2, "interpreters must be"),
        ("base_path: e\nthreads: two\n", 2, "threads must be an integer"),
    ],
)
def test_bad_tflite_keys_name_their_line(
    etc: Path,
    text: str,
    line: int,
    message: str,
) -> None:
    path = write(etc / "models.d/edge.yaml", text)
    error = refused(etc)
    assert (error.path, error.line) == (str(path), line)
    assert message in error.message


def test_which_versions_load_as_tflite(tmp_path: Path) -> None:
    both, saved, lite = (tmp_path / n for n in ("both", "saved", "lite"))
    for d in (both, saved, lite):
        d.mkdir()
    for d in (both, saved):
        (d / "saved_model.pb").write_bytes(b"")
    for d in (both, lite):
        (d / "model.tflite").write_bytes(b"")
    assert not loads_as_tflite(str(saved), platform="tensorflow", prefer_tflite=True)
    assert loads_as_tflite(str(lite), platform="tensorflow", prefer_tflite=False)
    assert not loads_as_tflite(str(both), platform="tensorflow", prefer_tflite=False)
    assert loads_as_tflite(str(both), platform="tensorflow", prefer_tflite=True)
    assert loads_as_tflite(str(both), platform="tflite", prefer_tflite=False)


def detail(name: str, index: int, shape: list[int], dtype: type = np.float32) -> dict[str, object]:
    return {"name": name, "index": index, "dtype": dtype, "shape_signature": np.array(shape)}


def test_generated_signature_uses_tensor_names_without_suffix() -> None:
    meta = build_signature_defs(
        {}, None, [detail("x:0", 0, [-1, 1])], [detail("y", 3, [-1, 1]), detail("s", 4, [1], bytes)]
    )
    sig = meta.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert sig.inputs["x"].name == "x:0"
    assert [d.size for d in sig.inputs["x"].tensor_shape.dim] == [-1, 1]
    assert sig.outputs["s"].dtype == types_pb2.DT_STRING


def test_native_signature_keeps_its_aliases() -> None:
    native = ("serving_default", {"images": detail("serving_default_images:0", 0, [-1, 4])},
              {"probabilities": detail("StatefulPartitionedCall:0", 9, [-1, 2])})  # fmt: skip
    meta = build_signature_defs({}, native, [], [])
    sig = meta.signature_def["serving_default"]
    assert sig.inputs["images"].name == "serving_default_images:0"
    assert list(sig.outputs) == ["probabilities"]


def test_metadata_signature_names_are_fixed_or_refused() -> None:
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    sig.inputs["x"].name = "tflite_input:0"
    sig.outputs["y"].name = "y:0"
    inputs, outputs = [detail("tflite_input", 0, [1, 1])], [detail("y", 4, [1, 1])]
    meta = build_signature_defs({"serving_default": sig.SerializeToString()}, None, inputs, outputs)
    fixed = meta.signature_def["serving_default"]
    assert (fixed.inputs["x"].name, fixed.outputs["y"].name) == ("tflite_input", "y")
    sig.outputs["z"].name = "nowhere:0"
    with pytest.raises(errors.InvalidArgument, match="Signature output z references an unknown"):
        build_signature_defs({"serving_default": sig.SerializeToString()}, None, inputs, outputs)


def edge_model(delegate: str) -> ModelConfig:
    return ModelConfig("edge", "/m/edge", platform="tflite", delegate=delegate, origin="e.yaml:1")


def test_config_check_refuses_a_missing_edgetpu_runtime() -> None:
    assert delegate_library("edgetpu") == EDGETPU_LIBRARY == "libedgetpu.so.1"
    with pytest.raises(ConfigError) as refusal:
        check_machine(ServerSettings(), [edge_model("edgetpu")], available={})
    message = str(refusal.value)
    assert message.startswith("e.yaml:1")
    assert "model edge: TF Lite delegate 'edgetpu' is not available" in message
    assert "libedgetpu.so.1" in message and "libedgetpu1-std" in message


def test_config_check_refuses_a_delegate_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "libdelegate.so"
    with pytest.raises(ConfigError, match=f"{missing} does not exist"):
        check_machine(ServerSettings(), [edge_model(str(missing))], available={})
    not_a_library = tmp_path / "notes.so"
    not_a_library.write_text("not ELF")
    with pytest.raises(ConfigError, match="cannot load"):
        check_machine(ServerSettings(), [edge_model(str(not_a_library))], available={})
