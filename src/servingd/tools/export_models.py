"""Export the project's own small test models as SavedModel version directories.

    python -m servingd.tools.export_models half_plus_two OUTDIR
    python -m servingd.tools.export_models mlp OUTDIR
    python -m servingd.tools.export_models wide_mlp OUTDIR
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
- half_plus_two_tf1, half_plus_two_tf2, half_plus_three, counter: the models TF Serving tests
  with, same contract, written by servingd's own code (see servingd.tools.reference_models).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from servingd.tools import reference_models

log = logging.getLogger(__name__)

MLP_SEED = 20240601
MLP_LAYERS = (784, 512, 512, 10)
WIDE_MLP_LAYERS = (784, 4096, 4096, 10)


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


EXPORTERS: dict[str, Callable[[str | Path], Path]] = {
    "half_plus_two": export_half_plus_two,
    "mlp": export_mlp,
    "wide_mlp": export_wide_mlp,
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
