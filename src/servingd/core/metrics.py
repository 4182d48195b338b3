"""Prometheus metrics, under TensorFlow Serving's names.

TF Serving exports its TensorFlow monitoring metrics with '/' replaced by ':', e.g.
`:tensorflow:serving:request_count{model_name,status}`. Dashboards query those exact
series names, so counters here keep them (prometheus_client's Counter would append
`_total`): `TfCounter` exposes its samples under the bare name, typed `untyped` (rate()
works on it as on any counter). Histograms and gauges are prometheus_client's own.

One registry per process (`REGISTRY`); the REST front end serves it at the path of
`--monitoring_config_file` (default /monitoring/prometheus/metrics). Each package defines
its own series on it (`batching/metrics.py`, `apis/metrics.py`, `servables/metrics.py`,
`sources/metrics.py`); core keeps the registry, the counter type and the state gauge.
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


# -- servingd's own (no TF Serving equivalent) ---------------------------------------------
SERVABLE_STATE = Gauge(
    "servingd_servable_available",
    "1 when the version is AVAILABLE, 0 otherwise (kept while the version is known).",
    ["model_name", "version"],
    registry=REGISTRY,
)
