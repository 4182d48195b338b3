"""TF Lite versions (model.tflite, LiteRT) through every API, against the same models served
as SavedModels, with the official TF Serving client."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from servingd.batching.parameters import BatchingParameters
from servingd.config.models import ModelConfig
from servingd.core import errors
from servingd.core.ids import ServableId
from servingd.servables.tflite import TfLiteLoader, TfLiteOptions
from servingd.tools.export_models import cnn_images
from support.inprocess_server import loopback_settings, model_server_in_thread
from support.servingd_process import ServingdProcess
from support.tflite_models import export_all, model_config

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
# int8 inside, float32 at the edges: the quantized CNN's probabilities stay this close.
INT8_TOLERANCE = 0.02
FLOAT_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_all(tmp_path_factory.mktemp("tflite_models"))


@pytest.fixture(scope="module")
def server(bases: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = model_config(bases, tmp_path_factory.mktemp("config") / "models.config")
    with ServingdProcess([f"--model_config_file={config}"]) as process:
        process.wait_healthy()
        yield process


def predict(channel: grpc.Channel, name: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    return {alias: tf.make_ndarray(t) for alias, t in reply.outputs.items()}


def rest(port: int, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:  # say what the server said
        raise AssertionError(f"{path}: {exc.code} {exc.read()!r}") from exc


def test_tflite_answers_equal_the_saved_model(server: ServingdProcess) -> None:
    channel = server.channel()
    xs = np.array([[1.0], [2.0], [5.0]], np.float32)
    half = predict(channel, "half_plus_two_tflite", {"x": xs})["y"]
    np.testing.assert_array_equal(half, predict(channel, "half_plus_two", {"x": xs})["y"])
    np.testing.assert_allclose(half.ravel(), [2.5, 3.0, 4.5])

    images = cnn_images(5, seed=11)
    reference = predict(channel, "small_cnn", {"images": images})["probabilities"]
    assert reference.shape == (5, 10) and np.ptp(reference) > 0.05  # answers that differ
    as_float = predict(channel, "small_cnn_tflite", {"images": images})["probabilities"]
    np.testing.assert_allclose(as_float, reference, atol=FLOAT_TOLERANCE)
    as_int8 = predict(channel, "small_cnn_int8_tflite", {"images": images})["probabilities"]
    np.testing.assert_allclose(as_int8, reference, atol=INT8_TOLERANCE)
    assert np.abs(as_int8 - reference).max() > FLOAT_TOLERANCE  # it really is quantized
    # One image alone (a batch of 1 after a batch of 5: the interpreter's input is resized).
    single = predict(channel, "small_cnn_tflite", {"images": images[:1]})["probabilities"]
    np.testing.assert_allclose(single, reference[:1], atol=FLOAT_TOLERANCE)


def test_rest_row_and_columnar_predict(server: ServingdProcess) -> None:
    images = cnn_images(2, seed=12)
    expected = predict(server.channel(), "small_cnn", {"images": images})["probabilities"]
    row = rest(
        server.rest_port,
        "/v1/models/small_cnn_tflite:predict",
        {"instances": [{"images": image.tolist()} for image in images]},
    )
    np.testing.assert_allclose(row["predictions"], expected, atol=FLOAT_TOLERANCE)
    columnar = rest(
        server.rest_port,
        "/v1/models/small_cnn_tflite:predict",
        {"inputs": {"images": images.tolist()}},
    )
    np.testing.assert_allclose(columnar["outputs"], expected, atol=FLOAT_TOLERANCE)
    half = rest(server.rest_port, "/v1/models/half_plus_two_tflite:predict", {"instances": [1.0]})
    assert half == {"predictions": [2.5]}


def test_metadata_and_status(server: ServingdProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "small_cnn_int8_tflite"
    request.metadata_field.append("signature_def")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    reply = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(signatures)
    sig = signatures.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert [d.size for d in sig.inputs["images"].tensor_shape.dim] == [-1, 64, 64, 3]
    assert sig.inputs["images"].dtype == tf.float32.as_datatype_enum
    assert list(sig.outputs) == ["probabilities"]

    body = rest(server.rest_port, "/v1/models/small_cnn_tflite/metadata")
    rest_sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert rest_sig["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert body["model_spec"]["version"] == "1"

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "small_cnn_tflite"
    status = model_service_pb2_grpc.ModelServiceStub(server.channel()).GetModelStatus(
        status_request, timeout=30
    )
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, AVAILABLE)]
    assert (
        rest(server.rest_port, "/v1/models/half_plus_two_tflite")["model_version_status"][0][
            "state"
        ]
        == "AVAILABLE"
    )


def write_warmup(version_dir: Path, xs: list[float]) -> None:
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.inputs["x"].CopyFrom(tf.make_tensor_proto(xs, dtype=tf.float32))
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(log.SerializeToString())


def test_labels_and_warmup(bases: dict[str, Path], tmp_path: Path) -> None:
    base = tmp_path / "half"
    for version in (1, 2):
        shutil.copytree(bases["half_plus_two_tflite"] / "1", base / str(version))
    write_warmup(base / "2", [1.0, 2.0])
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "half" base_path: "{base}" '
        'model_platform: "tflite" model_version_policy { all {} } '
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } } }'
    )
    # READY comes with version 1 serving; the labels (version 2 still warming up then) are
    # applied again when version 2 is AVAILABLE.
    with ServingdProcess([f"--model_config_file={config}"]) as server:
        server.wait_healthy()
        deadline = time.monotonic() + 120
        while True:
            states = rest(server.rest_port, "/v1/models/half")["model_version_status"]
            if sorted(s["state"] for s in states) == ["AVAILABLE", "AVAILABLE"]:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.1)
        reply = rest(
            server.rest_port, "/v1/models/half/labels/canary:predict", {"instances": [2.0]}
        )
        assert reply == {"predictions": [3.0]}
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half"
        request.model_spec.version_label = "stable"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([[4.0]], dtype=tf.float32))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        answer = stub.Predict(request, timeout=30)
        assert answer.model_spec.version.value == 1
        assert tf.make_ndarray(answer.outputs["y"]).tolist() == [[4.0]]
        output = server.output()
    assert "Number of warmup records read: 1." in output
    assert output.count("No warmup data file found") == 1  # version 1 has none


def test_tf_serving_tflite_models(tf_serving_testdata: Path, tmp_path: Path) -> None:
    names = {
        "plain": "saved_model_half_plus_two_tflite",
        "with_sigdef": "saved_model_half_plus_two_tflite_with_sigdef",
        "parse_example": "parse_example_tflite",
    }
    config = model_config(
        {name: tf_serving_testdata / folder for name, folder in names.items()},
        tmp_path / "models.config",
    )
    flags = [f"--model_config_file={config}", "--prefer_tflite_model", "--max_num_load_retries=0"]
    with ServingdProcess(flags) as server:
        server.wait_healthy(service="with_sigdef")
        server.wait_healthy(service="plain")
        for name in ("plain", "with_sigdef"):
            # TF Serving's documented answer; with_sigdef maps `x` to its tensor tflite_input.
            outputs = predict(server.channel(), name, {"x": np.array([[2.0]], np.float32)})
            np.testing.assert_allclose(outputs["y"], [[3.0]])
        body = rest(server.rest_port, "/v1/models/with_sigdef/metadata")
        sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert sig["inputs"]["x"]["name"] == "tflite_input"  # the ":0" TF name, fixed
        # Its ParseExampleV2 is a custom op that TF Serving links in and LiteRT's Python
        # runtime does not ship: the version fails to load, saying so.
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "parse_example"
        stub = model_service_pb2_grpc.ModelServiceStub(server.channel())
        status = stub.GetModelStatus(request, timeout=30).model_version_status[0]
        assert status.status.error_code == grpc.StatusCode.UNIMPLEMENTED.value[0]
        assert "ParseExampleV2" in status.status.error_message


def test_prefer_tflite_model_picks_the_tflite_file(bases: dict[str, Path], tmp_path: Path) -> None:
    version = tmp_path / "both" / "1"
    shutil.copytree(bases["small_cnn"] / "1", version)
    shutil.copy(bases["half_plus_two_tflite"] / "1" / "model.tflite", version)
    for prefer, alias in ((False, "images"), (True, "x")):
        with ServingdProcess(
            ["--model_name=both", f"--model_base_path={tmp_path / 'both'}",
             f"--prefer_tflite_model={str(prefer).lower()}"],
        ) as server:  # fmt: skip
            server.wait_healthy()
            body = rest(server.rest_port, "/v1/models/both/metadata")
            sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
            assert list(sig["inputs"]) == [alias]


def test_sixteen_clients_on_two_interpreters(bases: dict[str, Path]) -> None:
    settings = loopback_settings(
        models=(ModelConfig("half", str(bases["half_plus_two_tflite"]), platform="tflite"),),
        num_tflite_pools=2,  # every run goes to a worker thread: they share the pool
    )
    with model_server_in_thread(settings) as running:
        handle = running.server.lookup.handle("half", None, None)
        try:
            assert handle.servable.pool.size == 2
        finally:
            handle.release()

        def client(k: int) -> int:
            channel = grpc.insecure_channel(running.grpc_target)
            wrong = 0
            for i in range(20):
                # Every call its own batch size: the interpreters are resized all the time.
                xs = np.arange(1 + (k + i) % 7, dtype=np.float32).reshape(-1, 1) + k
                ys = predict(channel, "half", {"x": xs})["y"]
                wrong += int(not np.array_equal(ys, 0.5 * xs + 2.0))
            channel.close()
            return wrong

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            assert sum(pool.map(client, range(16))) == 0


def test_batched_through_the_shared_scheduler(bases: dict[str, Path]) -> None:
    batching = BatchingParameters(max_batch_size=8, batch_timeout_micros=20_000)
    settings = loopback_settings(
        models=(
            ModelConfig(
                "cnn", str(bases["small_cnn_tflite"]), platform="tflite", batching=batching
            ),
        ),
    )
    images = cnn_images(8, seed=13)
    with model_server_in_thread(settings) as running:
        expected = predict(grpc.insecure_channel(running.grpc_target), "cnn", {"images": images})[
            "probabilities"
        ]

        def client(k: int) -> np.ndarray:
            with grpc.insecure_channel(running.grpc_target) as channel:
                return predict(channel, "cnn", {"images": images[k : k + 1]})["probabilities"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(client, range(8)))
        assert running.server.batching.parameters_for(ServableId("cnn", 1)) is batching
    np.testing.assert_allclose(np.concatenate(answers), expected, atol=FLOAT_TOLERANCE)


def test_reference_kernels_answer_as_xnnpack(bases: dict[str, Path]) -> None:
    images = cnn_images(3, seed=14)
    answers = []
    for xnnpack in (True, False):
        loader = TfLiteLoader(
            ServableId("cnn", 1),
            str(bases["small_cnn_tflite"] / "1"),
            TfLiteOptions(threads=1, xnnpack=xnnpack),
        )
        loader.load()
        servable = loader.servable()
        answers.append(servable.run(servable.signature(), {"images": images})["probabilities"])
        loader.unload()
    np.testing.assert_allclose(answers[0], answers[1], atol=FLOAT_TOLERANCE)


def fixed_batch_model(path: Path) -> Path:
    """A TF Lite model fixed at one row: its Reshape to [1, 2, 2] cannot take a resized input."""

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def double(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.reshape(tf.reshape(x, [1, 2, 2]) * 2.0, [1, 4])}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()])
    path.mkdir(parents=True)
    (path / "model.tflite").write_bytes(converter.convert())
    return path


def test_a_fixed_batch_model_runs_bigger_requests_in_slices(tmp_path: Path) -> None:
    loader = TfLiteLoader(ServableId("fixed", 1), str(fixed_batch_model(tmp_path / "fixed" / "1")))
    loader.load()
    servable = loader.servable()
    signature = servable.signature()
    assert servable.fixed_batch is not None and servable.fixed_batch.size == 1
    for rows in (1, 3, 5):
        x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
        (y,) = servable.run(signature, {"x": x}).values()
        np.testing.assert_array_equal(y, 2 * x)
    loader.unload()


def test_a_delegate_whose_library_is_missing_fails_the_load(bases: dict[str, Path]) -> None:
    loader = TfLiteLoader(
        ServableId("half", 1),
        str(bases["half_plus_two_tflite"] / "1"),
        TfLiteOptions(delegate="/nonexistent/libedgetpu.so.1"),
    )
    with pytest.raises(errors.FailedPrecondition, match="cannot load the TF Lite delegate"):
        loader.load()
    loader = TfLiteLoader(ServableId("half", 1), str(bases["half_plus_two_tflite"] / "1"))
    loader.load()  # the same version without the delegate loads
    loader.unload()
