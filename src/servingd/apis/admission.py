"""Admission control shared by the gRPC and REST front ends: in-flight caps and size limits.

An overloaded server must say no at once instead of queueing work it cannot finish: a
request that would exceed the server-wide (or its model's) cap on concurrent inference
requests is refused with UNAVAILABLE (HTTP 503) before anything is decoded or run, so
that the client can retry elsewhere or later. Health, status, metadata and metrics
requests are never counted: they must keep answering while inference is saturated.

Size limits are checked before tensors are materialized: a TensorProto may claim a huge
shape with a single value (TensorFlow pads it out), so the element count is computed from
the declared shapes alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servingd.core.errors import InvalidArgument, Unavailable
from servingd.core.metrics import TfCounter

REJECTED = TfCounter(
    ":servingd:admission_rejected_count",
    "Requests refused before running because an in-flight cap was reached.",
    ["scope"],
)


@dataclass(frozen=True)
class AdmissionOptions:
    """Caps on concurrent inference requests (0: no cap) and on request size; the
    server's settings, whose defaults live in config/schema.py."""

    max_in_flight: int
    max_in_flight_per_model: int
    max_tensor_elements: int


class InFlightLimiter:
    """Counts inference requests in flight; refuses, never waits, when a cap is reached.

    ``acquire(model)`` returns a release function that must be called exactly once when
    the request is finished (also when it failed). Thread-safe.
    """

    def __init__(self, options: AdmissionOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._total = 0
        self._per_model: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._total

    def acquire(self, model: str) -> Callable[[], None]:
        cap, model_cap = self.options.max_in_flight, self.options.max_in_flight_per_model
        with self._lock:
            if cap and self._total >= cap:
                REJECTED.inc("server")
                raise Unavailable(
                    f"Server overloaded: {cap} inference requests already in flight "
                    "(--max_in_flight_requests); retry later with backoff"
                )
            count = self._per_model.get(model, 0)
            if model_cap and count >= model_cap:
                REJECTED.inc("model")
                raise Unavailable(
                    f"Model {model} overloaded: {model_cap} of its requests already in flight "
                    "(--max_in_flight_requests_per_model); retry later with backoff"
                )
            self._total += 1
            self._per_model[model] = count + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._total -= 1
                left = self._per_model[model] - 1
                if left:
                    self._per_model[model] = left
                else:
                    del self._per_model[model]

        return release


def tensor_proto_elements(proto: Any) -> int:
    """Elements a TensorProto declares by its shape (negative dims are refused)."""
    count = 1
    for dim in proto.tensor_shape.dim:
        if dim.size < 0:
            raise InvalidArgument(f"Tensor shape has a negative dimension ({dim.size})")
        count *= dim.size
    return count


def check_tensor_protos(protos: Mapping[str, Any], max_elements: int) -> None:
    """Refuses a request whose TensorProtos together declare more than ``max_elements``."""
    if not max_elements:
        return
    _check_total(((alias, tensor_proto_elements(p)) for alias, p in protos.items()), max_elements)


def check_arrays(arrays: Mapping[str, Any], max_elements: int) -> None:
    """The same limit for decoded inputs (numpy arrays), e.g. from REST JSON."""
    if not max_elements:
        return
    _check_total(((alias, int(a.size)) for alias, a in arrays.items()), max_elements)


def _check_total(sizes: Iterable[tuple[str, int]], max_elements: int) -> None:
    total = 0
    for alias, size in sizes:
        total += size
        if total > max_elements:
            raise InvalidArgument(
                f"Request too large: input '{alias}' brings the request to {total} tensor "
                f"elements, more than the limit of {max_elements} (--max_tensor_elements)"
            )
