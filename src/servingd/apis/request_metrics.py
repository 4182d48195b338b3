"""Per-request metrics as TF Serving records them: request_count and request_latency."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from servingd.apis.metrics import REQUEST_COUNT, REQUEST_LATENCY
from servingd.core.errors import ServingError
from servingd.core.metrics import labelled

GRPC = "GRPC"
REST = "REST"


class RequestObservation:
    """Filled in by the handler: which model the request named (empty: not recorded)."""

    __slots__ = ("model_name",)

    def __init__(self) -> None:
        self.model_name = ""


class observe_request:  # lower case: used like the function it replaced
    """Counts the request by model and status code and records its latency (microseconds).

    A class rather than a @contextmanager generator: it is on every request's path.
    """

    __slots__ = ("_api", "_entrypoint", "_observation", "_start")

    def __init__(self, api: str, entrypoint: str) -> None:
        self._api = api
        self._entrypoint = entrypoint
        self._observation = RequestObservation()
        self._start = 0.0

    def __enter__(self) -> RequestObservation:
        self._start = time.perf_counter()
        return self._observation

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        model_name = self._observation.model_name
        if not model_name:
            return
        if exc is None:
            status = "OK"
        elif isinstance(exc, ServingError):
            status = exc.code
        elif isinstance(exc, asyncio.CancelledError):
            status = "CANCELLED"  # the client went away (or its deadline passed) first
        else:
            status = "UNKNOWN"
        REQUEST_COUNT.inc(model_name, status)
        labelled(REQUEST_LATENCY, model_name, self._api, self._entrypoint).observe(
            (time.perf_counter() - self._start) * 1e6
        )
