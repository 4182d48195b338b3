"""The request path's series, under TF Serving's names (servables/tensorflow/util.cc)."""

from __future__ import annotations

from prometheus_client import Histogram

from servingd.core.metrics import LATENCY_US_BUCKETS, REGISTRY, TfCounter, exponential_buckets

# -- request path (TF Serving: servables/tensorflow/util.cc) ------------------------------
REQUEST_COUNT = TfCounter(
    ":tensorflow:serving:request_count",
    "The total number of requests.",
    ["model_name", "status"],
)
REQUEST_LATENCY = Histogram(
    ":tensorflow:serving:request_latency",
    "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
    ["model_name", "API", "entrypoint"],
    buckets=LATENCY_US_BUCKETS,
    registry=REGISTRY,
)
RUNTIME_LATENCY = Histogram(
    ":tensorflow:serving:runtime_latency",
    "Distribution of wall time (in microseconds) for Tensorflow runtime.",
    ["model_name", "API", "runtime"],
    buckets=LATENCY_US_BUCKETS,
    registry=REGISTRY,
)
REQUEST_EXAMPLE_COUNTS = Histogram(
    ":tensorflow:serving:request_example_counts",
    "The number of tensorflow.Examples per request.",
    ["model"],
    buckets=exponential_buckets(1, 2, 15),
    registry=REGISTRY,
)
REQUEST_EXAMPLE_COUNT_TOTAL = TfCounter(
    ":tensorflow:serving:request_example_count_total",
    "The total number of tensorflow.Examples.",
    ["model"],
)
