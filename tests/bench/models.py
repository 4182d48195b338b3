"""make bench's model set: what each model is fed, in-process and as pre-serialized requests.

The models are servingd's own exports (servingd.tools.edge_models, random weights):
mobilenet_v2 (images), text_encoder (token ids), tabular (tf.Examples, through Classify),
jpeg_classifier (JPEG bytes, decoded in the graph) and half_plus_two (pure overhead).
One request is one row (one image, one sequence, one example): the batch scheduler forms
the batches.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servingd.tools import edge_models

PREDICT = "/tensorflow.serving.PredictionService/Predict"
CLASSIFY = "/tensorflow.serving.PredictionService/Classify"


@dataclass(frozen=True)
class BenchModel:
    name: str
    input_name: str  # the serving_default signature's input ("" for Classify)
    rows: Callable[[int], Any]  # n rows of input (an array, or serialized tf.Examples)
    classify: bool = False

    @property
    def method(self) -> str:
        return CLASSIFY if self.classify else PREDICT


def _images(n: int) -> np.ndarray:
    size = edge_models.IMAGE_SIZE
    return np.random.default_rng(n).random((n, size, size, 3), np.float32)


def _tokens(n: int) -> np.ndarray:
    shape = (n, edge_models.SEQUENCE_LENGTH)
    return np.random.default_rng(n).integers(1, edge_models.VOCABULARY, shape, np.int32)


def _examples(n: int) -> list[bytes]:
    return [edge_models.tabular_example(i) for i in range(n)]


def _jpegs(n: int) -> np.ndarray:
    return np.array([edge_models.sample_jpeg(i) for i in range(n)], dtype=object)


def _halves(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32).reshape(n, 1)


MODELS = {
    m.name: m
    for m in (
        BenchModel("mobilenet_v2", "images", _images),
        BenchModel("text_encoder", "tokens", _tokens),
        BenchModel("tabular", "", _examples, classify=True),
        BenchModel("jpeg_classifier", "image_bytes", _jpegs),
        BenchModel("half_plus_two", "x", _halves),
    )
}


# For the GPU bench (tests/bench/gpu.py), not make bench's set.
GPU_ONLY = {"resnet50": BenchModel("resnet50", "images", _images)}
EVERY_MODEL = {**MODELS, **GPU_ONLY}


def grpc_request(model: BenchModel, rows: int = 1) -> bytes:
    """The serialized PredictRequest (or ClassificationRequest) for `rows` rows."""
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, predict_pb2

    if model.classify:
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = model.name
        for example in model.rows(rows):
            request.input.example_list.examples.add().ParseFromString(example)
        return bytes(request.SerializeToString())
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = model.name
    predict.inputs[model.input_name].CopyFrom(tf.make_tensor_proto(model.rows(rows)))
    return bytes(predict.SerializeToString())


def rest_request(model: BenchModel, rows: int = 1) -> bytes:
    """TF Serving's REST :predict body for `rows` rows: {"instances": ...} of plain numbers
    (images, token ids), or base64 JPEG objects for jpeg_classifier."""
    if model.classify:
        raise ValueError(f"{model.name} is served through Classify, not :predict")
    if model.name == "jpeg_classifier":
        return rest_jpeg_request(rows)
    return json.dumps({"instances": model.rows(rows).tolist()}).encode()


def rest_jpeg_request(rows: int = 1) -> bytes:
    """TF Serving's REST Predict body for jpeg_classifier: the same JPEG bytes as the gRPC
    request, base64 in JSON ({"b64": ...}), as REST clients send binary inputs."""
    images = _jpegs(rows)
    instances = [{"b64": base64.b64encode(image).decode()} for image in images]
    return json.dumps({"instances": instances}).encode()


def write_requests(work: Path) -> dict[str, Path]:
    """Every model's one-row gRPC request (and jpeg_classifier's REST body), as files."""
    paths = {}
    for model in MODELS.values():
        paths[f"grpc-{model.name}"] = work / f"grpc-{model.name}.bin"
        paths[f"grpc-{model.name}"].write_bytes(grpc_request(model))
    paths["rest-jpeg_classifier"] = work / "rest-jpeg_classifier.json"
    paths["rest-jpeg_classifier"].write_bytes(rest_jpeg_request())
    return paths
