"""Batching series, under TF Serving's names (batching_session.cc, batching_util.cc)."""

from __future__ import annotations

from prometheus_client import Histogram

from servingd.core.metrics import REGISTRY, TfCounter, exponential_buckets

# -- batching (TF Serving: servables/tensorflow/batching_session.cc, batching_util.cc) -----
# TF's samplers carry fewer labels (queuing_latency: thread_pool_name; padding_size:
# execution_batch_size); servingd adds model_name so that one server's models can be told
# apart. sum by (...) gives TF's series back.
BATCHING_QUEUING_LATENCY = Histogram(
    ":tensorflow:serving:batching_session:queuing_latency",
    "Distribution of wall time spent (in microseconds) in queuing",
    ["thread_pool_name", "model_name"],
    # TF: scale 100 us, power 1.2, 52 buckets (~1 s).
    buckets=exponential_buckets(100, 1.2, 52),
    registry=REGISTRY,
)
BATCHING_INPUT_BATCH_SIZE = Histogram(
    ":tensorflow:serving:batching_session:input_batch_size",
    "Tracks the batch size distribution on the inputs.",
    ["model_name"],
    buckets=exponential_buckets(1, 2, 15),
    registry=REGISTRY,
)
BATCHING_PROCESSED_BATCH_SIZE = Histogram(
    ":tensorflow:serving:batching_session:processed_batch_size",
    "Tracks the batch size distribution on processing.",
    ["model_name"],
    buckets=exponential_buckets(1, 2, 15),
    registry=REGISTRY,
)
BATCHING_PADDING_SIZE = Histogram(
    ":tensorflow:serving:batching_session:padding_size",
    "Tracks the padding size distribution on batches.",
    ["model_name", "execution_batch_size"],
    buckets=[0, *exponential_buckets(1, 2, 14)],
    registry=REGISTRY,
)
BATCHING_WRAPPED_RUN_COUNT = TfCounter(
    ":tensorflow:serving:batching_session:wrapped_run_count",
    "Total count of run calls on the wrapped session",
    ["model_name"],
)
