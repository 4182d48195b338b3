"""Model warmup: assets.extra/tf_serving_warmup_requests is replayed before a version serves.

The counter model (TF1, a reference variable, as TF Serving's saved_model_counter) shows that
records really ran: every ``incr_counter`` Predict adds one, and ``get_counter`` reads the total.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from servingd.core import errors
from servingd.core.ids import ServableId
from servingd.servables.saved_model import SavedModelLoader
from servingd.servables.warmup import MAX_NUM_RECORDS, WarmupOptions
from servingd.tools.reference_models import write_warmup_requests
from support.servingd_process import ServingdProcess


def counter_copy(testdata: Path, base: Path) -> Path:
    target = base / "counter" / "1"
    shutil.copytree(testdata / "saved_model_counter" / "00000123", target)
    return target


def predict_log(signature: str) -> prediction_log_pb2.PredictionLog:
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "ignored"
    log.predict_log.request.model_spec.signature_name = signature
    return log


def load(version_dir: Path, warmup: WarmupOptions | None) -> SavedModelLoader:
    loader = SavedModelLoader(ServableId("counter", 1), str(version_dir), warmup=warmup)
    loader.load()
    return loader


def counter_value(loader: SavedModelLoader) -> int:
    servable = loader.servable()
    return int(np.asarray(servable.run(servable.signature("get_counter"), {})["output"]))


@pytest.mark.parametrize(("iterations", "expected"), [(1, 3), (2, 6)])
def test_records_are_replayed_num_request_iterations_times(
    testdata: Path, tmp_path: Path, iterations: int, expected: int
) -> None:
    version_dir = counter_copy(testdata, tmp_path)
    write_warmup_requests(version_dir, [predict_log("incr_counter").SerializeToString()] * 3)
    loader = load(version_dir, WarmupOptions(num_request_iterations=iterations))
    try:
        assert counter_value(loader) == expected
    finally:
        loader.unload()


def test_disabled_warmup_and_missing_file_load_cold(testdata: Path, tmp_path: Path) -> None:
    version_dir = counter_copy(testdata, tmp_path)
    for warmup in (None, WarmupOptions(enabled=True)):  # no file yet: fine
        loader = load(version_dir, warmup)
        assert counter_value(loader) == 0
        loader.unload()
    write_warmup_requests(version_dir, [predict_log("incr_counter").SerializeToString()])
    loader = load(version_dir, WarmupOptions(enabled=False))
    assert counter_value(loader) == 0
    loader.unload()


@pytest.mark.parametrize(
    ("records", "error", "message"),
    [
        (
            [
                predict_log("incr_counter").SerializeToString(),
                predict_log("nope").SerializeToString(),
            ],
            errors.FailedPrecondition,
            "Warmup record 2 (predict_log) of {path} failed: "
            'Serving signature key "nope" not found.',
        ),
        ([b"\xff\xff not a proto"], errors.InvalidArgument, "Failed to parse warmup record 1"),
        (
            [prediction_log_pb2.PredictionLog(session_run_log={}).SerializeToString()],
            errors.Unimplemented,
            "Unsupported log_type for warmup: session_run_log",
        ),
        (
            [b""] * (MAX_NUM_RECORDS + 1),
            errors.InvalidArgument,
            f"Number of warmup records exceeds the maximum ({MAX_NUM_RECORDS}) at {{path}}",
        ),
    ],
)
def test_bad_warmup_fails_the_load_naming_file_and_record(
    testdata: Path,
    tmp_path: Path,
    records: list[bytes],
    error: type[errors.ServingError],
    message: str,
) -> None:
    version_dir = counter_copy(testdata, tmp_path)
    path = write_warmup_requests(version_dir, records)
    loader = SavedModelLoader(ServableId("counter", 1), str(version_dir), warmup=WarmupOptions())
    with pytest.raises(error) as info:
        loader.load()
    assert message.format(path=path) in info.value.message
    assert info.value.message.startswith("Loading servable: {name: counter version: 1}")
    with pytest.raises(errors.FailedPrecondition):
        loader.servable()  # nothing left behind; a retry may load again
    path.unlink()
    loader.load()
    loader.unload()


def test_a_file_that_is_not_tfrecord_is_data_loss(testdata: Path, tmp_path: Path) -> None:
    version_dir = counter_copy(testdata, tmp_path)
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a TFRecord file at all")
    loader = SavedModelLoader(ServableId("counter", 1), str(version_dir), warmup=WarmupOptions())
    with pytest.raises(errors.DataLoss) as info:
        loader.load()
    assert "Please verify your warmup data is in TFRecord format." in info.value.message


def test_classify_regress_multi_inference_records(testdata: Path, tmp_path: Path) -> None:
    version_dir = tmp_path / "hp2" / "123"
    shutil.copytree(testdata / "saved_model_half_plus_two_cpu" / "00000123", version_dir)
    classify = prediction_log_pb2.PredictionLog()
    request = classify.classify_log.request
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2)
    regress = prediction_log_pb2.PredictionLog()
    regress.regress_log.request.model_spec.signature_name = "regress_x_to_y"
    regress.regress_log.request.input.CopyFrom(request.input)
    multi = prediction_log_pb2.PredictionLog()
    task = multi.multi_inference_log.request.tasks.add()
    task.model_spec.name = "hp2"
    task.model_spec.signature_name = "regress_x_to_y2"
    task.method_name = "tensorflow/serving/regress"
    multi.multi_inference_log.request.input.CopyFrom(request.input)
    bad = prediction_log_pb2.PredictionLog()
    bad.regress_log.request.model_spec.signature_name = "classify_x_to_y"
    bad.regress_log.request.input.CopyFrom(request.input)
    records = [r.SerializeToString() for r in (classify, regress, multi)]
    path = write_warmup_requests(version_dir, records)
    loader = SavedModelLoader(ServableId("hp2", 123), str(version_dir), warmup=WarmupOptions())
    loader.load()
    loader.unload()
    write_warmup_requests(version_dir, [*records, bad.SerializeToString()])
    with pytest.raises(errors.InvalidArgument) as info:
        loader.load()
    assert f"Warmup record 4 (regress_log) of {path} failed: No regression outputs found" in (
        info.value.message
    )


@pytest.mark.slow
def test_daemon_warms_up_before_available(testdata: Path, tmp_path: Path) -> None:
    version_dir = counter_copy(testdata, tmp_path)
    write_warmup_requests(version_dir, [predict_log("incr_counter").SerializeToString()] * 2)
    with ServingdProcess(
        [
            "--model_name=counter",
            f"--model_base_path={version_dir.parent}",
            "--num_request_iterations_for_warmup=3",
        ],
        rest=False,
    ) as server:
        server.wait_healthy()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "counter"
        request.model_spec.signature_name = "get_counter"
        reply = stub.Predict(request, timeout=30)
        assert tf.make_ndarray(reply.outputs["output"]) == 6
