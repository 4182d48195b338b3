"""Loading and warmup series, under TF's names (cc/saved_model/loader.cc, serving/core)."""

from __future__ import annotations

from prometheus_client import Histogram

from servingd.core.metrics import LATENCY_US_BUCKETS, REGISTRY, TfCounter

# -- loading (TF: cc/saved_model/loader.cc, serving/core) ----------------------------------
LOAD_LATENCY = Histogram(
    ":tensorflow:cc:saved_model:load_latency",
    "Latency in microseconds for SavedModels that were successfully loaded.",
    ["model_path"],
    buckets=LATENCY_US_BUCKETS,
    registry=REGISTRY,
)
LOAD_ATTEMPT_COUNT = TfCounter(
    ":tensorflow:cc:saved_model:load_attempt_count",
    "The number of times a SavedModel was successfully loaded.",
    ["model_path", "status"],
)
MODEL_WARMUP_LATENCY = Histogram(
    ":tensorflow:serving:model_warmup_latency",
    "Distribution of wall time (in microseconds) for warming up the model.",
    ["model_path", "status"],
    buckets=LATENCY_US_BUCKETS,
    registry=REGISTRY,
)
