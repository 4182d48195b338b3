"""The models edge boxes run, as SavedModels with random weights (nothing downloaded).

- mobilenet_v2: ``keras.applications.MobileNetV2(weights=None)``, 224x224 RGB, exported
  with ``model.export``. ``serving_default``: ``images`` float32 [None, 224, 224, 3] ->
  ``output_0`` float32 [None, 1000]. resnet50: the same with ``ResNet50`` (the GPU bench).
- text_encoder: a small transformer encoder (token and position embeddings, 2 encoder
  layers of 4-head self-attention and a 512-wide feed-forward, mean pooling), Keras layers,
  exported with ``model.export``. ``serving_default``: ``tokens`` int32 [None, 128] ->
  ``output_0`` float32 [None, 128].
- tabular: a wide-and-deep classifier over tf.Examples, for Classify. Features: ``country``
  and ``device`` (bytes), ``hour`` (int64), ``age``, ``income``, ``session_seconds``
  (float). Wide: hashed one-hots and a country x device cross, linear; deep: embeddings and
  the numbers through 64-32 dense layers. ``serving_default`` is a classification
  signature (method ``tensorflow/serving/classify``): ``inputs`` serialized tf.Example
  [None] -> ``classes`` string [None, 2] and ``scores`` float32 [None, 2].
- jpeg_classifier: takes JPEG bytes and decodes them in the graph, as image models are
  deployed for REST clients (base64 in JSON): ``image_bytes`` string [None] -> decoded,
  resized to 224x224, a small convolutional net -> ``scores`` float32 [None, 10].

Every export is deterministic (fixed seeds).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SEED = 20261206
IMAGE_SIZE = 224
SEQUENCE_LENGTH = 128
VOCABULARY = 8000
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"


def export_mobilenet_v2(path: str | Path) -> Path:
    return _export_keras_application(path, "MobileNetV2")


def export_resnet50(path: str | Path) -> Path:
    return _export_keras_application(path, "ResNet50")


def _export_keras_application(path: str | Path, name: str) -> Path:
    """`keras.applications.<name>(weights=None)` at 224x224, exported with model.export."""
    import keras  # type: ignore[import-untyped]
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    build = getattr(keras.applications, name)
    model = build(weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="images")
    out = Path(path)
    model.export(str(out), input_signature=[spec], verbose=False)
    log.info("exported %s to %s", name, out)
    return out


def export_text_encoder(path: str | Path, layers: int = 2) -> Path:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    width, heads, hidden = 128, 4, 512

    class PositionEmbedding(keras.layers.Layer):  # type: ignore[misc]
        """A learned vector per position, added to the token embeddings."""

        def build(self, input_shape: Any) -> None:
            self.positions = self.add_weight(
                shape=(input_shape[1], input_shape[2]), initializer="random_normal"
            )

        def call(self, x: Any) -> Any:
            return x + self.positions

    tokens = keras.Input((SEQUENCE_LENGTH,), dtype="int32", name="tokens")
    x = PositionEmbedding()(keras.layers.Embedding(VOCABULARY, width)(tokens))
    for _ in range(layers):
        attended = keras.layers.MultiHeadAttention(heads, width // heads)(x, x)
        x = keras.layers.LayerNormalization()(x + attended)
        fed = keras.layers.Dense(hidden, activation="gelu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(width)(fed))
    model = keras.Model(tokens, keras.layers.GlobalAveragePooling1D()(x))
    spec = tf.TensorSpec([None, SEQUENCE_LENGTH], tf.int32, name="tokens")
    out = Path(path)
    model.export(str(out), input_signature=[spec], verbose=False)
    log.info("exported text_encoder (%d layers) to %s", layers, out)
    return out


TABULAR_CATEGORIES = {"country": 100, "device": 20}  # hash buckets
TABULAR_NUMBERS = ("age", "income", "session_seconds")
TABULAR_CLASSES = ("no", "yes")


def export_tabular(path: str | Path) -> Path:
    import tensorflow as tf

    rng = np.random.default_rng(SEED)

    def variable(*shape: int) -> tf.Variable:
        return tf.Variable(rng.normal(0, 0.1, shape).astype(np.float32))

    cross_buckets, hours, embedding = 1000, 24, 8
    module = tf.Module()
    module.wide = {n: variable(b, 1) for n, b in TABULAR_CATEGORIES.items()}
    module.wide_cross = variable(cross_buckets, 1)
    module.embeddings = {n: variable(b, embedding) for n, b in TABULAR_CATEGORIES.items()}
    module.hour_embedding = variable(hours, embedding)
    deep_in = embedding * (len(TABULAR_CATEGORIES) + 1) + len(TABULAR_NUMBERS)
    module.deep = [(variable(deep_in, 64), variable(64)), (variable(64, 32), variable(32))]
    module.deep_out = variable(32, 1)
    features = {n: tf.io.FixedLenFeature([], tf.string, b"") for n in TABULAR_CATEGORIES}
    features["hour"] = tf.io.FixedLenFeature([], tf.int64, 0)
    features.update({n: tf.io.FixedLenFeature([], tf.float32, 0.0) for n in TABULAR_NUMBERS})

    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        f = tf.io.parse_example(inputs, features)
        ids = {
            n: tf.strings.to_hash_bucket_fast(f[n], buckets)
            for n, buckets in TABULAR_CATEGORIES.items()
        }
        cross = tf.strings.to_hash_bucket_fast(
            tf.strings.join([f["country"], f["device"]], "x"), cross_buckets
        )
        wide = tf.gather(module.wide_cross, cross) + tf.add_n(
            [tf.gather(module.wide[n], ids[n]) for n in TABULAR_CATEGORIES]
        )
        hour = tf.clip_by_value(f["hour"], 0, hours - 1)
        numbers = tf.stack([f[n] for n in TABULAR_NUMBERS], axis=1)
        h = tf.concat(
            [tf.gather(module.embeddings[n], ids[n]) for n in TABULAR_CATEGORIES]
            + [tf.gather(module.hour_embedding, hour), tf.math.log1p(tf.abs(numbers))],
            axis=1,
        )
        for w, b in module.deep:
            h = tf.nn.relu(tf.matmul(h, w) + b)
        p = tf.sigmoid(wide + tf.matmul(h, module.deep_out))
        scores = tf.concat([1.0 - p, p], axis=1)
        classes = tf.tile(tf.constant([TABULAR_CLASSES]), [tf.shape(inputs)[0], 1])
        return {"classes": classes, "scores": scores}

    serve = tf.function(classify, input_signature=[tf.TensorSpec([None], tf.string, "inputs")])
    module.serve = serve
    out = Path(path)
    tf.saved_model.save(module, str(out), signatures={"serving_default": serve})
    _set_method_name(out, "serving_default", CLASSIFY_METHOD_NAME)
    log.info("exported tabular to %s", out)
    return out


def tabular_example(i: int) -> bytes:
    """A serialized tf.Example with every feature of the tabular model (varied by `i`)."""
    import tensorflow as tf

    def b(v: str) -> Any:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))

    def f(v: float) -> Any:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))

    feature = {
        "country": b(f"c{i % 37}"),
        "device": b(("phone", "tablet", "desktop")[i % 3]),
        "hour": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 24])),
        "age": f(20.0 + i % 50),
        "income": f(1000.0 * (i % 90)),
        "session_seconds": f(3.5 * (i % 200)),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return bytes(example.SerializeToString())


def _set_method_name(saved_model_dir: Path, signature: str, method_name: str) -> None:
    """tf.saved_model.save marks every signature as Predict; Classify's gets its own."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = saved_model_dir / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    for meta_graph in saved.meta_graphs:
        meta_graph.signature_def[signature].method_name = method_name
    pb.write_bytes(saved.SerializeToString())


JPEG_CLASSES = 10


def export_jpeg_classifier(path: str | Path) -> Path:
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    module = tf.Module()
    module.convs = [
        tf.Variable(rng.normal(0, 0.1, (3, 3, c_in, c_out)).astype(np.float32))
        for c_in, c_out in ((3, 16), (16, 32), (32, 64))
    ]
    module.head = tf.Variable(rng.normal(0, 0.1, (64, JPEG_CLASSES)).astype(np.float32))

    def decode(image: tf.Tensor) -> tf.Tensor:
        pixels = tf.io.decode_jpeg(image, channels=3)
        return tf.image.resize(tf.cast(pixels, tf.float32) / 255.0, [IMAGE_SIZE, IMAGE_SIZE])

    def classify(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)
        h = tf.map_fn(decode, image_bytes, fn_output_signature=shape)
        for w in module.convs:
            h = tf.nn.relu(tf.nn.conv2d(h, w, strides=2, padding="SAME"))
        pooled = tf.reduce_mean(h, axis=[1, 2])
        return {"scores": tf.nn.softmax(tf.matmul(pooled, module.head))}

    spec = tf.TensorSpec([None], tf.string, name="image_bytes")
    serve = tf.function(classify, input_signature=[spec])
    module.serve = serve
    out = Path(path)
    tf.saved_model.save(module, str(out), signatures={"serving_default": serve})
    log.info("exported jpeg_classifier to %s", out)
    return out


def sample_jpeg(seed: int = 0, size: int = IMAGE_SIZE) -> bytes:
    """A JPEG of random smooth colour blocks, `size` x `size` (about what a camera frame
    scaled for the model weighs)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))
    return bytes(tf.io.encode_jpeg(pixels, quality=90).numpy())
