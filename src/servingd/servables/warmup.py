"""Model warmup: replay ``assets.extra/tf_serving_warmup_requests`` before a version serves.

TF Serving's saved_model_warmup{,_util}.cc: the file is a TFRecord of ``PredictionLog``
protos; each record's request (Predict, Classify, Regress or MultiInference; the model
name and version in it are ignored) is run ``num_request_iterations`` times against the
freshly loaded version, so that lazily built kernels, callables and caches exist before the
first client arrives. A missing file is fine (warmup is optional). At most 1000 records;
a record that does not parse, a ``session_run_log``, a request that fails or a file that is
not TFRecord fails the load, with the file and the record number in the message.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from servingd.core import errors
from servingd.servables import tf_example
from servingd.servables.codecs import tensor_proto_to_ndarray
from servingd.servables.metrics import MODEL_WARMUP_LATENCY
from servingd.servables.servable import Servable
from servingd.servables.tfrecord import read_records
from servingd.wire.tensorflow_serving.apis import prediction_log_pb2

log = logging.getLogger(__name__)

ASSETS_EXTRA_DIRECTORY = "assets.extra"
WARMUP_REQUESTS_FILE_NAME = "tf_serving_warmup_requests"
MAX_NUM_RECORDS = 1000


@dataclass(frozen=True, slots=True)
class WarmupOptions:
    """``--enable_model_warmup`` and ``--num_request_iterations_for_warmup``."""

    enabled: bool = True
    num_request_iterations: int = 1

    def __post_init__(self) -> None:
        if self.num_request_iterations < 1:
            raise errors.InvalidArgument(
                f"num_request_iterations_for_warmup must be >= 1, got {self.num_request_iterations}"
            )


def warmup_file(export_dir: str) -> str:
    return os.path.join(export_dir, ASSETS_EXTRA_DIRECTORY, WARMUP_REQUESTS_FILE_NAME)


def run_warmup(servable: Servable, export_dir: str, options: WarmupOptions) -> int:
    """Replays the warmup file of ``export_dir`` against ``servable``; returns the records read.

    Raises a ServingError (TF Serving's code) naming the file and the record when warmup
    fails; records ``:tensorflow:serving:model_warmup_latency`` either way.
    """
    path = warmup_file(export_dir)
    if not os.path.exists(path):
        log.info("No warmup data file found at %s", path)
        return 0
    start = time.monotonic()
    status = "OK"
    records = 0
    try:
        for records, record in enumerate(_read_records(path), start=1):
            if records > MAX_NUM_RECORDS:
                raise errors.InvalidArgument(
                    f"Number of warmup records exceeds the maximum ({MAX_NUM_RECORDS}) at {path}"
                )
            _replay(servable, path, records, record, options.num_request_iterations)
    except errors.ServingError as exc:
        status = f"{exc.code}: {exc.message}"
        raise
    finally:
        MODEL_WARMUP_LATENCY.labels(model_path=export_dir, status=status).observe(
            (time.monotonic() - start) * 1e6
        )
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        records,
        (time.monotonic() - start) * 1e6,
    )
    return records


def _read_records(path: str) -> Any:
    """The file's records as bytes; a file that is not TFRecord is DATA_LOSS, as in TF."""
    try:
        yield from read_records(path)
    except errors.DataLoss as exc:
        raise errors.DataLoss(
            f"{exc.message} (reading {path}). Please verify your warmup data is in TFRecord format."
        ) from None
    except OSError as exc:
        raise errors.Unknown(f"Cannot read warmup data {path}: {exc}") from None


def _replay(servable: Servable, path: str, number: int, record: bytes, iterations: int) -> None:
    log_proto = prediction_log_pb2.PredictionLog()
    try:
        log_proto.ParseFromString(record)
    except DecodeError:
        raise errors.InvalidArgument(
            f"Failed to parse warmup record {number} from {path}: not a PredictionLog"
        ) from None
    kind = log_proto.WhichOneof("log_type")
    if kind is None:
        return  # TF Serving skips a record with no request in it
    for _ in range(iterations):
        try:
            _run_request(servable, kind, log_proto)
        except errors.ServingError as exc:
            raise type(exc)(
                f"Warmup record {number} ({kind}) of {path} failed: {exc.message}"
            ) from None


def _run_request(servable: Servable, kind: str, log_proto: Any) -> None:
    if kind == "predict_log":
        request = log_proto.predict_log.request
        signature = servable.signature(request.model_spec.signature_name)
        inputs = {alias: tensor_proto_to_ndarray(t) for alias, t in request.inputs.items()}
        servable.run(signature, inputs, tuple(request.output_filter))
    elif kind == "classify_log":
        tf_example.classify(servable, log_proto.classify_log.request)
    elif kind == "regress_log":
        tf_example.regress(servable, log_proto.regress_log.request)
    elif kind == "multi_inference_log":
        tf_example.multi_inference(servable, log_proto.multi_inference_log.request)
    else:
        raise errors.Unimplemented(f"Unsupported log_type for warmup: {kind}")
