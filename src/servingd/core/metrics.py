"""Prometheus metrics, under TensorFlow Serving's names.

TF Serving exports its TensorFlow monitoring metrics with '/' replaced by ':', e.g.
`:tensorflow:serving:request_count{model_name,status}`. Dashboards query those exact
series names, so counters here keep them (prometheus_client's Counter would append
`_total`): `TfCounter` exposes its samples under the bare name, typed `untyped` (rate()
works on it as on any counter). Histograms and gauges are prometheus_client's own.

One registry per process (`REGISTRY`); the REST front end serves it at the path of
`--monitoring_config_file` (default /monitoring/prometheus/metrics).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)


def exponential_buckets(start: float, factor: float, count: int) -> list[float]:
    """TF's monitoring::Buckets::Exponential(start, factor, count)."""
    return [start * factor**i for i in range(count)]


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: Counter | Histogram | Gauge, *labelvalues: str) -> Any:
    """`metric.labels(*labelvalues)`, cached: prometheus_client validates the values and
    takes a lock on every labels() call, and the request path calls this per request.
    Children are never removed (prometheus_client keeps them too)."""
    key = (id(metric), labelvalues)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*labelvalues))
    return child


# TF Serving's latency buckets: scale 10 us, power 1.8, 33 buckets (~20 minutes).
LATENCY_US_BUCKETS = exponential_buckets(10, 1.8, 33)


class TfCounter(Collector):
    """A monotonically increasing counter exposed under its exact name (no `_total`)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        key = tuple(labelvalues)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labelvalues: str) -> float:
        with self._lock:
            return self._values.get(tuple(labelvalues), 0.0)

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, "unknown")
        with self._lock:
            items = list(self._values.items())
        for key, value in items:
            metric.add_sample(self.name, dict(zip(self.labelnames, key, strict=True)), value)
        yield metric

    def describe(self) -> Iterable[Metric]:
        yield Metric(self.name, self.documentation, "unknown")


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

# -- servingd's own (no TF Serving equivalent) ---------------------------------------------
SERVABLE_STATE = Gauge(
    "servingd_servable_available",
    "1 when the version is AVAILABLE, 0 otherwise (kept while the version is known).",
    ["model_name", "version"],
    registry=REGISTRY,
)

VERSION_FALLBACKS = Counter(
    "servingd_version_fallbacks",
    "Times the newest version of a model failed to load and an older one was served "
    "instead (latest policy, fall_back_to_loadable_version on).",
    ["model_name"],
    registry=REGISTRY,
)

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
