"""Export the project's own small test models as SavedModel version directories.

    python -m servingd.tools.export_models half_plus_two OUTDIR
    python -m servingd.tools.export_models mlp OUTDIR
    python -m servingd.tools.export_models wide_mlp OUTDIR
    python -m servingd.tools.export_models small_cnn OUTDIR
    python -m servingd.tools.export_models half_plus_two_tflite OUTDIR
    python -m servingd.tools.export_models small_cnn_tflite OUTDIR
    python -m servingd.tools.export_models small_cnn_int8_tflite OUTDIR
    python -m servingd.tools.export_models mobilenet_v2 OUTDIR   (also resnet50,
        text_encoder, tabular, jpeg_classifier)
    python -m servingd.tools.export_models half_plus_two_tf1 OUTDIR  (also: half_plus_two_tf2,
        half_plus_three, counter)

OUTDIR is the version directory (e.g. models/half_plus_two/1): it receives saved_model.pb,
variables/ and so on. Nothing is downloaded or trained; weights come from a fixed seed.

- half_plus_two: y = 0.5 * x + 2. ``serving_default`` takes ``x`` float32 [None, 1], as TF
  Serving's own half_plus_two does, and returns ``y`` of the same shape: x = [[1],[2],[5]]
  gives y = [[2.5],[3],[4.5]]. (Fed by tensor name, [1, 2, 5] works too, as in TF Serving.)
- mlp: a dense 784-512-512-10 network (ReLU, ReLU, softmax). ``serving_default`` takes ``x``
  float32 [None, 784] and returns ``probabilities`` float32 [None, 10].
- wide_mlp: the same network 784-4096-4096-10 (20 M weights, 77 MB), same signature. At
  batch 1 its run reads every weight for one row, so it is the model for which batching
  pays most (make bench shows it beside mlp, whose batch-1 run costs about what one
  request's transport costs).
- small_cnn: a MobileNet-shaped CNN (a strided convolution, then depthwise-separable blocks
  with ReLU6, global average pooling, a dense softmax; random weights). ``serving_default``
  takes ``images`` float32 [None, 64, 64, 3] and returns ``probabilities`` [None, 10].
- *_tflite: the same model converted by ``tf.lite.TFLiteConverter`` into ``model.tflite``
  (its signature keeps the SavedModel's aliases); small_cnn_int8_tflite is quantized to
  int8 with a representative dataset (float32 input and output, int8 inside).
- mobilenet_v2, resnet50, text_encoder, tabular (Classify over tf.Example) and
  jpeg_classifier (JPEG bytes decoded in the graph): the models edge boxes run, with random
  weights; their signatures are in ``servingd.tools.edge_models``.
- half_plus_two_tf1, half_plus_two_tf2, half_plus_three, counter: the models TF Serving tests
  with, same contract, written by servingd's own code (see servingd.tools.reference_models).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from servingd.tools import edge_models, reference_models

log = logging.getLogger(__name__)

MLP_SEED = 20240601
MLP_LAYERS = (784, 512, 512, 10)
WIDE_MLP_LAYERS = (784, 4096, 4096, 10)
CNN_SEED = 20261206
CNN_INPUT = (64, 64, 3)
CNN_CLASSES = 10
CNN_HEAD_GAIN = 100.0  # sharper answers than He init gives (random features differ little)
# Depthwise-separable blocks: (channels in, channels out, stride), MobileNet v1's start.
CNN_BLOCKS = ((16, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1))


def export_half_plus_two(path: str | Path) -> Path:
    """Write the half_plus_two SavedModel into the version directory ``path``."""
    import tensorflow as tf

    module = tf.Module()
    module.a = tf.Variable(0.5, dtype=tf.float32, name="a")
    module.b = tf.Variable(2.0, dtype=tf.float32, name="b")

    def half_plus_two(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": module.a * x + module.b}

    spec = tf.TensorSpec(shape=[None, 1], dtype=tf.float32, name="x")
    serve = tf.function(half_plus_two, input_signature=[spec])
    module.serve = serve
    out = Path(path)
    tf.saved_model.save(module, str(out), signatures={"serving_default": serve})
    log.info("exported half_plus_two to %s", out)
    return out


def export_mlp(path: str | Path, layers: Sequence[int] = MLP_LAYERS) -> Path:
    """Write a dense MLP SavedModel (784-512-512-10 unless `layers` says otherwise) into
    the version directory ``path``."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(MLP_SEED)
    module = tf.Module()
    weights = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(layers)):
        limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
        w = rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)
        b = np.zeros(fan_out, dtype=np.float32)
        weights.append((tf.Variable(w, name=f"w{i}"), tf.Variable(b, name=f"b{i}")))
    module.weights_list = weights

    def mlp(x: tf.Tensor) -> dict[str, tf.Tensor]:
        h = x
        for i, (w, b) in enumerate(module.weights_list):
            h = tf.matmul(h, w) + b
            if i < len(module.weights_list) - 1:
                h = tf.nn.relu(h)
        return {"probabilities": tf.nn.softmax(h)}

    spec = tf.TensorSpec(shape=[None, layers[0]], dtype=tf.float32, name="x")
    serve = tf.function(mlp, input_signature=[spec])
    module.serve = serve
    out = Path(path)
    tf.saved_model.save(module, str(out), signatures={"serving_default": serve})
    log.info("exported mlp %s to %s", "-".join(map(str, layers)), out)
    return out


def export_wide_mlp(path: str | Path) -> Path:
    """Write the 784-4096-4096-10 MLP SavedModel into the version directory ``path``."""
    return export_mlp(path, WIDE_MLP_LAYERS)


def export_small_cnn(path: str | Path) -> Path:
    """Write the MobileNet-shaped CNN SavedModel into the version directory ``path``."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(CNN_SEED)

    def variable(shape: Sequence[int], name: str, fan_in: int, gain: float = 2.0) -> tf.Variable:
        w = rng.normal(0.0, np.sqrt(gain / fan_in), size=shape).astype(np.float32)
        return tf.Variable(w, name=name)  # He initialisation (gain 2: ReLU halves the variance)

    module = tf.Module()
    module.stem = variable((3, 3, 3, CNN_BLOCKS[0][0]), "stem", fan_in=27)
    module.blocks = [
        (
            variable((3, 3, c_in, 1), f"dw{i}", fan_in=9),
            variable((1, 1, c_in, c_out), f"pw{i}", fan_in=c_in),
            stride,
        )
        for i, (c_in, c_out, stride) in enumerate(CNN_BLOCKS)
    ]
    c_last = CNN_BLOCKS[-1][1]
    module.head = variable((c_last, CNN_CLASSES), "head", fan_in=c_last, gain=CNN_HEAD_GAIN)

    def cnn(images: tf.Tensor) -> dict[str, tf.Tensor]:
        h = tf.nn.relu6(tf.nn.conv2d(images, module.stem, 2, "SAME"))
        for depthwise, pointwise, stride in module.blocks:
            h = tf.nn.relu6(tf.nn.depthwise_conv2d(h, depthwise, [1, stride, stride, 1], "SAME"))
            h = tf.nn.relu6(tf.nn.conv2d(h, pointwise, 1, "SAME"))
        pooled = tf.reduce_mean(h, axis=[1, 2])
        return {"probabilities": tf.nn.softmax(tf.matmul(pooled, module.head))}

    spec = tf.TensorSpec(shape=[None, *CNN_INPUT], dtype=tf.float32, name="images")
    serve = tf.function(cnn, input_signature=[spec])
    module.serve = serve
    out = Path(path)
    tf.saved_model.save(module, str(out), signatures={"serving_default": serve})
    log.info("exported small_cnn to %s", out)
    return out


def cnn_images(count: int, seed: int = CNN_SEED) -> Any:
    """`count` inputs for small_cnn: float32 [count, 64, 64, 3] within [0, 1), each image
    of its own brightness (so that the answers differ between images)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.random((count, *CNN_INPUT), dtype=np.float32)
    return images * rng.random((count, 1, 1, 1), dtype=np.float32)


def export_tflite(saved_model: str | Path, path: str | Path, *, int8: bool = False) -> Path:
    """Convert the SavedModel ``saved_model`` into ``path``/model.tflite (a version
    directory). ``int8``: full-integer quantization calibrated on cnn_images (float32
    input and output stay, as the SavedModel has them)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in cnn_images(64))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.tflite").write_bytes(converter.convert())
    log.info("exported %s as TF Lite%s to %s", saved_model, " (int8)" if int8 else "", out)
    return out


def _tflite_of(
    export: Callable[[str | Path], Path], *, int8: bool = False
) -> Callable[[str | Path], Path]:
    def export_as_tflite(path: str | Path) -> Path:
        with tempfile.TemporaryDirectory() as tmp:
            return export_tflite(export(Path(tmp) / "saved_model"), path, int8=int8)

    return export_as_tflite


EXPORTERS: dict[str, Callable[[str | Path], Path]] = {
    "half_plus_two": export_half_plus_two,
    "mlp": export_mlp,
    "wide_mlp": export_wide_mlp,
    "small_cnn": export_small_cnn,
    "half_plus_two_tflite": _tflite_of(export_half_plus_two),
    "small_cnn_tflite": _tflite_of(export_small_cnn),
    "small_cnn_int8_tflite": _tflite_of(export_small_cnn, int8=True),
    "mobilenet_v2": edge_models.export_mobilenet_v2,
    "resnet50": edge_models.export_resnet50,
    "text_encoder": edge_models.export_text_encoder,
    "tabular": edge_models.export_tabular,
    "jpeg_classifier": edge_models.export_jpeg_classifier,
    "half_plus_two_tf1": reference_models.export_half_plus_two_tf1,
    "half_plus_two_tf2": reference_models.export_half_plus_two_tf2,
    "half_plus_three": reference_models.export_half_plus_three,
    "counter": reference_models.export_counter,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servingd.tools.export_models",
        description="Export one of servingd's test models as a SavedModel version directory.",
    )
    parser.add_argument("name", choices=sorted(EXPORTERS), help="which model to export")
    parser.add_argument("outdir", type=Path, help="the version directory to write (e.g. m/1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.outdir.exists() and any(args.outdir.iterdir()):
        log.error("%s exists and is not empty; refusing to overwrite it", args.outdir)
        return 1
    EXPORTERS[args.name](args.outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
