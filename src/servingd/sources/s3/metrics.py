"""Prometheus metrics of S3 base paths, per model (servingd's own names)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from servingd.core.metrics import REGISTRY, exponential_buckets

S3_POLLS = Counter(
    "servingd_s3_polls",
    "Listings of a model's S3 base path, by result (ok, error).",
    ["model_name", "result"],
    registry=REGISTRY,
)
S3_REQUESTS = Counter(
    "servingd_s3_requests",
    "S3 API calls made for a model (ListObjectsV2 pages, GetObject).",
    ["model_name", "operation"],
    registry=REGISTRY,
)
S3_FETCHED_BYTES = Counter(
    "servingd_s3_fetched_bytes",
    "Bytes downloaded into the local cache for a model's versions.",
    ["model_name"],
    registry=REGISTRY,
)
S3_FETCH_SECONDS = Histogram(
    "servingd_s3_fetch_seconds",
    "Time to fetch and verify a whole version (successful fetches).",
    ["model_name"],
    buckets=exponential_buckets(0.05, 2, 14),
    registry=REGISTRY,
)
S3_ERRORS = Counter(
    "servingd_s3_errors",
    "Failures, by kind: list (the base path cannot be listed), fetch (a download failed), "
    "verify (size, ETag or SHA256SUMS mismatch).",
    ["model_name", "kind"],
    registry=REGISTRY,
)
