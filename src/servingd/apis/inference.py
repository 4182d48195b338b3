"""The protocol-independent request path shared by the gRPC and REST front ends.

A request takes a handle on the version it names, holds it until TensorFlow has finished
with it (also when the client gave up earlier: the session is still in use), and runs the
model on a worker thread, always: the event loop never runs TensorFlow, so health checks,
status and the other requests never wait behind a model run, and every run carries the
request's deadline, which TensorFlow enforces (a run on the loop thread could be neither
interrupted nor bounded). Decoding a large request and encoding a large answer leave the
loop too (`off_loop`, for work over `OFF_LOOP_ELEMENTS` tensor elements or
`OFF_LOOP_BYTES` of body): a 38-byte TensorProto may declare 60 M elements.

When the model is batched (`BatchingSession.parameters_for`), the request becomes a task of
the shared batch scheduler instead; the handle is held until the batch containing it has
run. A client whose deadline passes, or who cancels, takes its task out of the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from servingd.apis.loop_bridge import LoopBridge
from servingd.batching.session import BatchingSession
from servingd.core.errors import DeadlineExceeded, ServingError
from servingd.core.handles import ServableHandle
from servingd.core.ids import ServableId
from servingd.core.lookup import ServableLookup

if TYPE_CHECKING:
    from servingd.servables.saved_model import Signature

T = TypeVar("T")
# Decoding or encoding more tensor elements (or JSON bytes) than this happens on a worker
# thread: about a millisecond of work, as much as the loop may give one request.
OFF_LOOP_ELEMENTS = 1 << 16
OFF_LOOP_BYTES = 1 << 20
T_co = TypeVar("T_co", covariant=True)
Inputs = Mapping[str, np.ndarray]
# Inputs built from the leased version's signature (REST JSON needs its dtypes).
InputsFor = Callable[["Signature"], Inputs]


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


class SignaturePlan(Protocol[T_co]):
    """A request checked against one version, that the batch scheduler can take as a task
    (``servables.tf_example.ExamplePlan`` for Classify and Regress)."""

    @property
    def signature_key(self) -> str: ...

    @property
    def inputs(self) -> Inputs: ...

    @property
    def output_aliases(self) -> tuple[str, ...]: ...

    def run(
        self, servable: Any, timeout_s: float | None = None, in_caller_thread: bool = False
    ) -> T_co:
        """Runs unbatched, in the calling (worker) thread; `in_caller_thread`: TensorFlow's
        ops too (SavedModelServable.run)."""
        ...

    def finish(self, outputs: Mapping[str, np.ndarray]) -> T_co:
        """The answer from a batched run's outputs (by alias)."""
        ...


@dataclass(frozen=True, slots=True)
class PredictResult:
    id: ServableId
    signature_name: str
    outputs: dict[str, np.ndarray]


class InferenceRunner:
    """Runs signatures of loaded servables for the API front ends."""

    def __init__(
        self,
        lookup: ServableLookup,
        executor: concurrent.futures.Executor,
        batching: BatchingSession | None = None,
    ) -> None:
        self.lookup = lookup
        self._executor = executor
        self.batching = batching

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread (work too long for the event loop)."""
        loop = asyncio.get_running_loop()
        return await LoopBridge.for_loop(loop).watch(self._executor.submit(fn, *args))

    async def predict(
        self,
        request: ModelRequest,
        inputs: Inputs | InputsFor,
        output_filter: Sequence[str] = (),
        timeout: float | None = None,
        *,
        large: bool = False,
    ) -> PredictResult:
        """Runs the signature ``request`` names on the version it names.

        ``inputs`` may be a function of that version's signature: it is called once, under
        the same handle as the run, so a version swap between the two cannot happen (on a
        worker thread when `large`). Its errors are the request's own and carry no
        model/version suffix.
        """
        handle = self.lookup.handle(request.name, request.version, request.label)
        try:
            servable: Any = handle.servable
            try:
                signature = servable.signature(request.signature_name)
            except ServingError as exc:
                raise with_context(exc, handle.id) from None
            if not isinstance(inputs, Mapping):
                inputs = await self.off_loop(inputs, signature) if large else inputs(signature)
            started = self._start(handle.id, servable, signature, inputs, output_filter, timeout)
        except BaseException:
            handle.release()
            raise
        outputs = await _await_leased(handle, started, timeout, request)
        return PredictResult(handle.id, signature.name, outputs)

    def _start(
        self,
        servable_id: ServableId,
        servable: Any,
        signature: Any,
        inputs: Inputs,
        output_filter: Sequence[str],
        timeout: float | None,
    ) -> concurrent.futures.Future[dict[str, np.ndarray]]:
        """Queues the run: on the batch scheduler, or on a worker thread."""
        try:
            params = self.batching.parameters_for(servable_id) if self.batching else None
            if self.batching is not None and params is not None:
                return self.batching.submit(
                    servable_id, servable, signature, inputs, output_filter, params, timeout
                )
            return self._executor.submit(
                servable.run, signature, inputs, output_filter, timeout_s=timeout
            )
        except ServingError as exc:
            raise with_context(exc, servable_id) from None

    async def run(
        self,
        request: ModelRequest,
        call: Callable[[Any], T],
        timeout: float | None = None,
    ) -> ServableResult[T]:
        """Runs ``call(servable)`` on a worker thread against the version ``request`` names.

        The handle is held until ``call`` returns (also after the deadline passed: TensorFlow
        is still using the session); errors name the model and version. For MultiInference,
        whose model-side logic lives in ``servingd.servables`` (Classify and Regress go
        through ``run_planned``).
        """
        handle = self.lookup.handle(request.name, request.version, request.label)
        try:
            future = self._executor.submit(call, handle.servable)
        except BaseException:
            handle.release()
            raise
        value = await _await_leased(handle, future, timeout, request)
        return ServableResult(handle.id, value)

    async def run_planned(
        self,
        request: ModelRequest,
        make_plan: Callable[[Any], SignaturePlan[T]],
        timeout: float | None = None,
    ) -> ServableResult[T]:
        """Runs ``make_plan(servable)`` against the version ``request`` names: through the
        batch scheduler when the model is batched, else as an unbatched Predict (a worker
        thread).

        The plan is made on the event loop; batched, it is also finished there and only
        TensorFlow runs on the batch thread. Errors name the model and version.
        """
        handle = self.lookup.handle(request.name, request.version, request.label)
        finish: Callable[[dict[str, np.ndarray]], T] | None = None
        started: concurrent.futures.Future[Any]
        try:
            servable: Any = handle.servable
            plan = make_plan(servable)
            params = self.batching.parameters_for(handle.id) if self.batching else None
            if self.batching is not None and params is not None:
                signature = servable.signature(plan.signature_key)
                started = self.batching.submit(
                    handle.id,
                    servable,
                    signature,
                    plan.inputs,
                    plan.output_aliases,
                    params,
                    timeout,
                )
                finish = plan.finish
            else:
                started = self._executor.submit(plan.run, servable, timeout)
        except ServingError as exc:
            handle.release()
            raise with_context(exc, handle.id) from None
        except BaseException:
            handle.release()
            raise
        value = await _await_leased(handle, started, timeout, request)
        if finish is None:
            return ServableResult(handle.id, value)
        try:
            return ServableResult(handle.id, finish(value))
        except ServingError as exc:
            raise with_context(exc, handle.id) from None


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
    """Waits for `future` on the loop (through the loop's LoopBridge) for at most `timeout`.

    One timer per request instead of wait_for(shield(wrap_future(...))): that chain costs
    two extra futures, a task switch and one loop wake-up per request.
    """
    loop = asyncio.get_running_loop()
    waiter = LoopBridge.for_loop(loop).watch(future)
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
