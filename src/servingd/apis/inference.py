"""The protocol-independent request path shared by the gRPC and REST front ends.

A request takes a handle on the version it names, holds it until TensorFlow has finished
with it (also when the client gave up earlier: the session is still in use), and runs the
model on a worker thread, always: the event loop never runs TensorFlow, so health checks,
status and the other requests never wait behind a model run, and every run carries the
request's deadline, which TensorFlow enforces (a run on the loop thread could be neither
interrupted nor bounded). Decoding a large request and encoding a large answer leave the
loop too (`off_loop`, for work over `OFF_LOOP_ELEMENTS` tensor elements or
`OFF_LOOP_BYTES` of body): a 38-byte TensorProto may declare 60 M elements.

Every request goes one way (`InferenceRunner.run`): take the handle, make the request's
`Call` against that version (`Plan`), and have the version `start` it. Whether the model is
batched was decided when the version loaded (`servingd.batching.batched_servable`): a
batched request becomes a task of the shared batch scheduler, and the handle is held until
the batch containing it has run. A client whose deadline passes, or who cancels, takes its
task out of the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from servingd.apis.loop_bridge import watch
from servingd.core.errors import DeadlineExceeded, ServingError
from servingd.core.handles import ServableHandle
from servingd.core.ids import ServableId
from servingd.core.lookup import ServableLookup
from servingd.servables.servable import BatchInput, Call, Outputs, Servable, Workers
from servingd.servables.signatures import Signature

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
# Decoding or encoding more tensor elements (or JSON bytes) than this happens on a worker
# thread: about a millisecond of work, as much as the loop may give one request.
OFF_LOOP_ELEMENTS = 1 << 16
OFF_LOOP_BYTES = 1 << 20
Inputs = Mapping[str, np.ndarray]
# Inputs built from the leased version's signature (REST JSON needs its dtypes).
InputsFor = Callable[[Signature], Inputs]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What a request names: TF Serving's ModelSpec."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""


@dataclass(frozen=True, slots=True)
class ServableResult(Generic[T]):
    """What ``InferenceRunner.run`` returns: the version that answered and the call's value."""

    id: ServableId
    value: T


class Plan(Protocol[T_co]):
    """How a request becomes a `Call` on the version it leased.

    Called once per request, on the event loop, or on a worker thread when `off_loop`
    (decoding a large request). The ServingErrors it raises are passed on as they are: a
    plan names the version in those that are about the version (``with_context``).
    """

    @property
    def off_loop(self) -> bool: ...

    def __call__(self, servable: Servable) -> Call[T_co]: ...


@dataclass(frozen=True, slots=True)
class PredictResult:
    id: ServableId
    signature_name: str
    outputs: dict[str, np.ndarray]


class InferenceRunner:
    """Runs requests on loaded servables for the API front ends."""

    def __init__(self, lookup: ServableLookup, workers: Workers) -> None:
        """`workers`: where runs (and off-loop work) execute: the daemon's thread pool."""
        self.lookup = lookup
        self._workers = workers

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread (work too long for the event loop)."""
        return await watch(self._workers.submit(fn, *args), asyncio.get_running_loop())

    async def run(
        self, request: ModelRequest, plan: Plan[T], timeout: float | None = None
    ) -> ServableResult[T]:
        """Runs ``plan``'s call on the version ``request`` names.

        The handle is held until the call has run (also after the deadline passed:
        TensorFlow is still using the session); errors of the run name the model and
        version.
        """
        handle = self.lookup.handle(request.name, request.version, request.label)
        try:
            servable: Servable = handle.servable
            call = await self.off_loop(plan, servable) if plan.off_loop else plan(servable)
            try:
                started = servable.start(call, timeout, self._workers)
            except ServingError as exc:
                raise with_context(exc, handle.id) from None
        except BaseException:
            handle.release()
            raise
        value = await _await_leased(handle, started, timeout, request)
        return ServableResult(handle.id, value)


class PredictPlan:
    """Predict: the named signature of the leased version, fed `inputs` (or the inputs
    made from that signature: called once, under the same handle as the run, so a version
    swap between the two cannot happen). Planned, it is its own Call, whose value is the
    PredictResult."""

    __slots__ = (
        "_inputs",
        "id",
        "inputs",
        "off_loop",
        "output_filter",
        "signature",
        "signature_name",
    )
    # Set when planned (__call__).
    id: ServableId
    signature: Signature
    inputs: Inputs

    def __init__(
        self,
        inputs: Inputs | InputsFor,
        signature_name: str = "",
        output_filter: Sequence[str] = (),
        *,
        off_loop: bool = False,
    ) -> None:
        self._inputs = inputs
        self.signature_name = signature_name
        self.output_filter = output_filter
        self.off_loop = off_loop

    def __call__(self, servable: Servable) -> PredictPlan:
        try:
            signature = servable.signature(self.signature_name)
        except ServingError as exc:
            raise with_context(exc, servable.id) from None
        # The inputs' own errors are the request's: no model/version suffix.
        inputs = self._inputs
        self.inputs = inputs if isinstance(inputs, Mapping) else inputs(signature)
        self.id = servable.id
        self.signature = signature
        return self

    def batch_input(self, servable: Servable) -> BatchInput:
        return BatchInput(self.signature, self.inputs, self.output_filter)

    def run(self, servable: Servable, timeout_s: float | None) -> PredictResult:
        outputs = servable.run(self.signature, self.inputs, self.output_filter, timeout_s=timeout_s)
        return PredictResult(self.id, self.signature.name, outputs)

    def finish(self, outputs: Outputs) -> PredictResult:
        return PredictResult(self.id, self.signature.name, outputs)


class OnServable(Generic[T]):
    """A function of the servable, run on a worker thread and never batched (MultiInference,
    whose model-side logic lives in ``servingd.servables``). A Plan and its own Call."""

    __slots__ = ("fn",)
    off_loop = False

    def __init__(self, fn: Callable[[Servable], T]) -> None:
        self.fn = fn

    def __call__(self, servable: Servable) -> OnServable[T]:
        return self

    def batch_input(self, servable: Servable) -> None:
        return None

    def run(self, servable: Servable, timeout_s: float | None) -> T:
        return self.fn(servable)

    def finish(self, outputs: Outputs) -> T:
        raise AssertionError("a call with no batch input is never batched")


async def _await_leased(
    handle: ServableHandle,
    future: concurrent.futures.Future[T],
    timeout: float | None,
    request: ModelRequest,
) -> T:
    """Waits for the TensorFlow call that `handle` leases; errors name the version.

    The handle lives as long as the call, not as long as the waiting client.
    """
    future.add_done_callback(lambda _f: handle.release())
    try:
        result: T = await _await_with_deadline(future, timeout, request)
    except ServingError as exc:
        raise with_context(exc, handle.id) from None
    return result


def with_context(error: ServingError, servable_id: ServableId) -> ServingError:
    """The same error, its message ending with the model and version that raised it.

    TF Serving's own text stays first (clients match on it); the suffix is ours.
    """
    suffix = f" [model {servable_id.name}, version {servable_id.version}]"
    if error.message.endswith(suffix):
        return error
    return type(error)(error.message + suffix)


class _Expired(Exception):
    """Set on a request's waiter by its deadline timer."""


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


async def _await_with_deadline(
    future: concurrent.futures.Future[Any], timeout: float | None, request: ModelRequest
) -> Any:
    """Waits for `future` on the loop (`loop_bridge.watch`) for at most `timeout`.

    One timer per request instead of wait_for(shield(wrap_future(...))): that chain costs
    two extra futures and a task switch per request.
    """
    loop = asyncio.get_running_loop()
    waiter = watch(future, loop)
    timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
    try:
        return await waiter
    except asyncio.CancelledError:
        future.cancel()  # the client went away: a queued task leaves its queue
        raise
    except _Expired:
        assert timeout is not None
        future.cancel()  # only a task still queued (or not started) can be cancelled
        raise DeadlineExceeded(
            f"Deadline exceeded while running model {request.name}: the request's deadline "
            f"({timeout * 1000:.0f} ms left when it arrived) passed before the model finished"
        ) from None
    finally:
        if timer is not None:
            timer.cancel()
