"""TF Serving's reference test models, exported by servingd's own code.

TensorFlow Serving tests itself with a handful of tiny SavedModels. These functions write
models with the same contract (signature names, tensor names, dtypes, values, an asset, a
TF1 stateful model), so servingd's suite needs nothing from outside the repository:

- half_plus_two_tf1: a TF1 graph (tf.compat.v1 + SavedModelBuilder) with reference
  variables a=0.5, b=2, c=3. ``tf_example`` (serialized tf.Example, features ``x`` and
  ``x2``) is parsed inside the graph; ``x`` and ``x2`` are Identity tensors that a Predict can
  feed directly. Signatures: serving_default (predict, x -> y = 0.5x + 2), classify_x_to_y,
  regress_x_to_y, regress_x_to_y2 (y2 = 0.5x + 3) on tf_example, regress_x2_to_y3 (float
  x2 -> y3 = 0.5x2 + 3). An init op reads the asset ``assets/foo.txt``.
- half_plus_three: the same graph with b=3 (serving_default answers 0.5x + 3).
- half_plus_two_tf2: the same model written by tf.saved_model.save: serving_default takes
  ``x`` float32 [1]; the example signatures (classify_x_to_y, regress_x_to_y,
  regress_x_to_y2, regress_x2_to_y3, classify_x2_to_y3) are predict-method functions, as
  TF2 exports them; it carries the same asset.
- counter: a TF1 stateful model whose variable is reference-typed (it needs a Session-based
  loader; tf.saved_model.load cannot run it). Signatures get_counter, incr_counter,
  incr_counter_by (input ``delta``) and reset_counter, each answering ``output``.

``write_warmup_requests`` writes ``assets.extra/tf_serving_warmup_requests`` (a TFRecord of
PredictionLog protos) into a version directory.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ASSET_NAME = "foo.txt"
ASSET_TEXT = "asset-file-contents"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"

PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def _signature(inputs: dict[str, Any], outputs: dict[str, Any], method: str) -> Any:
    import tensorflow as tf

    v1 = tf.compat.v1
    return v1.saved_model.build_signature_def(
        inputs={k: v1.saved_model.build_tensor_info(t) for k, t in inputs.items()},
        outputs={k: v1.saved_model.build_tensor_info(t) for k, t in outputs.items()},
        method_name=method,
    )


def export_half_plus_tf1(path: str | Path, b: float = 2.0) -> Path:
    """Write the TF1-style half_plus_<b> SavedModel into the version directory ``path``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    out = Path(path)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess, tempfile.TemporaryDirectory() as tmp:
        a_var = v1.Variable(0.5, name="a", use_resource=False)
        b_var = v1.Variable(b, name="b", use_resource=False)
        c_var = v1.Variable(3.0, name="c", use_resource=False)
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = v1.io.parse_example(
            serialized,
            {
                "x": v1.io.FixedLenFeature([1], tf.float32),
                "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        for name in ("x", "x2"):  # parsing an unknown-rank input leaves the shape unknown
            features[name].set_shape([None, 1])
        x = tf.identity(features["x"], name="x")
        x2 = tf.identity(features["x2"], name="x2")
        y = tf.add(tf.multiply(a_var, x), b_var, name="y")
        y2 = tf.add(tf.multiply(a_var, x), c_var, name="y2")
        y3 = tf.add(tf.multiply(a_var, x2), c_var, name="y3")

        # The asset is copied into assets/ by the builder; the init op reads its name.
        asset_source = Path(tmp) / ASSET_NAME
        asset_source.write_text(ASSET_TEXT)
        asset_path = tf.constant(str(asset_source))
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset_path)
        filename = v1.Variable(
            ASSET_NAME, name="filename_tensor", trainable=False, collections=[], use_resource=False
        )
        init_op = tf.group(filename.assign(ASSET_NAME))

        signatures = {
            "serving_default": _signature({"x": x}, {"y": y}, PREDICT),
            "classify_x_to_y": _signature({"inputs": serialized}, {"scores": y}, CLASSIFY),
            "regress_x_to_y": _signature({"inputs": serialized}, {"outputs": y}, REGRESS),
            "regress_x_to_y2": _signature({"inputs": serialized}, {"outputs": y2}, REGRESS),
            "regress_x2_to_y3": _signature({"inputs": x2}, {"outputs": y3}, REGRESS),
        }
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(out))
        builder.add_meta_graph_and_variables(
            sess,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map=signatures,
            assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            main_op=init_op,
        )
        builder.save()
    log.info("exported TF1 half_plus (b=%s) to %s", b, out)
    return out


def export_half_plus_two_tf1(path: str | Path) -> Path:
    """TF1-style half_plus_two (y = 0.5x + 2) with its example signatures and an asset."""
    return export_half_plus_tf1(path, 2.0)


def export_half_plus_three(path: str | Path) -> Path:
    """TF1-style half_plus_three: serving_default answers y = 0.5x + 3."""
    return export_half_plus_tf1(path, 3.0)


def export_half_plus_two_tf2(path: str | Path) -> Path:
    """half_plus_two written by tf.saved_model.save, with TF2's example signatures."""
    import tensorflow as tf

    module = tf.Module()
    module.a = tf.Variable(0.5, dtype=tf.float32, name="a")
    module.b = tf.Variable(2.0, dtype=tf.float32, name="b")
    module.c = tf.Variable(3.0, dtype=tf.float32, name="c")

    def parse(serialized: tf.Tensor) -> tf.Tensor:
        features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        return features["x"]

    examples = tf.TensorSpec([None], tf.string, name="inputs")
    floats = tf.TensorSpec([1], tf.float32, name="inputs")

    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": module.a * x + module.b}

    def classify_x_to_y(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": module.a * parse(inputs) + module.b}

    def regress_x_to_y(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": module.a * parse(inputs) + module.b}

    def regress_x_to_y2(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": module.a * parse(inputs) + module.c}

    def regress_x2_to_y3(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": module.a * inputs + module.c}

    def classify_x2_to_y3(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": module.a * inputs + module.c}

    functions = {
        "serving_default": (serve, tf.TensorSpec([1], tf.float32, name="x")),
        "classify_x_to_y": (classify_x_to_y, examples),
        "regress_x_to_y": (regress_x_to_y, examples),
        "regress_x_to_y2": (regress_x_to_y2, examples),
        "regress_x2_to_y3": (regress_x2_to_y3, floats),
        "classify_x2_to_y3": (classify_x2_to_y3, floats),
    }
    signatures = {
        key: tf.function(function, input_signature=[spec])
        for key, (function, spec) in functions.items()
    }

    out = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        asset_source = Path(tmp) / ASSET_NAME
        asset_source.write_text(ASSET_TEXT)
        module.asset = tf.saved_model.Asset(str(asset_source))
        tf.saved_model.save(
            module,
            str(out),
            signatures=signatures,
        )
    log.info("exported TF2 half_plus_two to %s", out)
    return out


def export_counter(path: str | Path) -> Path:
    """Write the TF1 stateful counter SavedModel (a reference variable) into ``path``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    out = Path(path)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        counter = v1.Variable(0.0, dtype=tf.float32, name="counter", use_resource=False)
        with tf.name_scope("incr_counter_op"):
            incr = counter.assign_add(1.0)
        delta = v1.placeholder(tf.float32, name="delta")
        with tf.name_scope("incr_counter_by_op"):
            incr_by = counter.assign_add(delta)
        with tf.name_scope("reset_counter_op"):
            reset = counter.assign(0.0)
        signatures = {
            "get_counter": _signature({}, {"output": counter}, PREDICT),
            "incr_counter": _signature({}, {"output": incr}, PREDICT),
            "incr_counter_by": _signature({"delta": delta}, {"output": incr_by}, PREDICT),
            "reset_counter": _signature({}, {"output": reset}, PREDICT),
        }
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(out))
        builder.add_meta_graph_and_variables(
            sess,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map=signatures,
            strip_default_attrs=True,
        )
        builder.save()
    log.info("exported counter to %s", out)
    return out


def write_warmup_requests(version_dir: str | Path, records: Iterable[bytes]) -> Path:
    """Write serialized PredictionLog records as the version's warmup file; returns its path."""
    import tensorflow as tf

    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path
