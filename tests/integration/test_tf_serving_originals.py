"""The compatibility layer: TensorFlow Serving's original test models (../shared).

The suite runs on the project's own exports (support.testdata). These tests check that those
exports keep the contract of TF Serving's originals, and that servingd loads and runs the
originals themselves. They skip, with the reason, in a clone without ../shared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tensorflow.core.protobuf import saved_model_pb2

from servingd.core.ids import ServableId
from servingd.servables.saved_model import SavedModelLoader
from support.testdata import MODELS

X = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)

# Signatures of an original that the project's export does not copy, and why.
NOT_EXPORTED = {
    # TF Serving's two-version model is a later export with one more signature; both of
    # the project's versions are the half_plus_two_cpu export.
    "saved_model_half_plus_two_2_versions/00000123": {"classify_x2_to_y3"},
    "saved_model_half_plus_two_2_versions/00000124": {"classify_x2_to_y3"},
    # TF Serving's half_plus_three names a regress signature by its method name and feeds it
    # a float "tf_example"; the project's half_plus_three is half_plus_two with b = 3.
    "saved_model_half_plus_three/00000123": {"tensorflow/serving/regress"},
}
# TF2 exports name their tensors after the function calls: compare keys and dtypes only.
GENERATED_TENSOR_NAMES = {"saved_model_half_plus_two_tf2_cpu/00000123"}
# TF Serving's half_plus_three records no tensor shapes in its signatures.
SHAPES_NOT_RECORDED = {"saved_model_half_plus_three/00000123"}


def signatures(version_dir: Path, *, with_names: bool, with_shapes: bool) -> dict[str, object]:
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    (meta_graph,) = model.meta_graphs

    def tensors(infos: Any) -> dict[str, tuple[str, int, object]]:
        return {
            key: (
                info.name if with_names else "",
                info.dtype,
                [d.size for d in info.tensor_shape.dim] if with_shapes else None,
                info.tensor_shape.unknown_rank if with_shapes else None,
            )
            for key, info in infos.items()
        }

    return {
        key: (sig.method_name, tensors(sig.inputs), tensors(sig.outputs))
        for key, sig in meta_graph.signature_def.items()
    }


def test_project_exports_keep_the_contract_of_tf_servings_models(
    testdata: Path, tf_serving_testdata: Path
) -> None:
    for relative in MODELS:
        compare = {
            "with_names": relative not in GENERATED_TENSOR_NAMES,
            "with_shapes": relative not in SHAPES_NOT_RECORDED,
        }
        ours = signatures(testdata / relative, **compare)
        original = signatures(tf_serving_testdata / relative, **compare)
        missing = set(original) - set(ours) - NOT_EXPORTED.get(relative, set())
        assert not missing, f"{relative}: the export lacks {sorted(missing)}"
        for key in set(original) & set(ours):
            assert ours[key] == original[key], f"{relative} signature {key}"
        for asset in (tf_serving_testdata / relative).glob("assets/*"):
            assert (testdata / relative / "assets" / asset.name).is_file(), asset.name
    metadata = "half_plus_two_model_metadata.json"
    written = json.loads((testdata / metadata).read_text())
    assert written == json.loads((tf_serving_testdata / metadata).read_text())


def load(version_dir: Path) -> SavedModelLoader:
    loader = SavedModelLoader(ServableId("original", 123), str(version_dir))
    loader.load()
    return loader


def test_servingd_serves_tf_servings_original_models(tf_serving_testdata: Path) -> None:
    expected = {
        "saved_model_half_plus_two_cpu/00000123": 0.5 * X + 2,
        "saved_model_half_plus_three/00000123": 0.5 * X + 3,
        "saved_model_half_plus_two_2_versions/00000123": 0.5 * X + 2,
        "saved_model_half_plus_two_2_versions/00000124": 0.5 * X + 2,
    }
    for relative, y in expected.items():
        loader = load(tf_serving_testdata / relative)
        try:
            servable = loader.servable()
            out = servable.run(servable.signature(""), {"x": X})
            np.testing.assert_array_equal(out["y"], y, err_msg=relative)
        finally:
            loader.unload()

    loader = load(tf_serving_testdata / "saved_model_half_plus_two_tf2_cpu/00000123")
    try:
        servable = loader.servable()
        y = servable.run(servable.signature(""), {"x": X.ravel()})["y"]
        np.testing.assert_array_equal(y, (0.5 * X + 2).ravel())
    finally:
        loader.unload()

    loader = load(tf_serving_testdata / "saved_model_counter/00000123")
    try:
        servable = loader.servable()
        servable.run(servable.signature("reset_counter"), {})
        incr = servable.signature("incr_counter")
        got = [float(servable.run(incr, {})["output"]) for _ in range(2)]
        assert got == [1.0, 2.0]
    finally:
        loader.unload()
