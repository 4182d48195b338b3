"""The protocol-independent request path shared by the gRPC and REST front ends.

A request takes a handle on the version it names, holds it until TensorFlow has finished
with it (also when the client gave up earlier: the session is still in use), and runs the
model on a worker thread so that the event loop does not block on TensorFlow, or on the
event loop itself when the signature is known to run within the inline limit (see
inline_runs: a thread hand-off costs more than a short run).

When the model is batched (`BatchingSession.parameters_for`), the request becomes a task of
the shared batch scheduler instead; the handle is held until the batch containing it has
run. A client whose deadline passes, or who cancels, takes its task out of the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from servingd.apis.inline_runs import InlinePolicy
from servingd.apis.loop_bridge import LoopBridge
from servingd.batching.session import BatchingSession
from servingd.core import metrics
from servingd.core.errors import DeadlineExceeded, ServingError
from servingd.core.handles import ServableHandle
from servingd.core.ids import ServableId
from servingd.core.lookup import ServableLookup

if TYPE_CHECKING:
    from servingd.servables.saved_model import Signature

T = TypeVar("T")
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
        """Runs unbatched, in the calling thread (a worker, or the event loop when inline);
        `in_caller_thread`: TensorFlow's ops too (SavedModelServable.run)."""
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
        inline: InlinePolicy | None = None,
    ) -> None:
        self.lookup = lookup
        self._executor = executor
        self.batching = batching
        self.inline = inline

    async def predict(
        self,
        request: ModelRequest,
        inputs: Inputs | InputsFor,
        output_filter: Sequence[str] = (),
        timeout: float | None = None,
    ) -> PredictResult:
        """Runs the signature ``request`` names on the version it names.

        ``inputs`` may be a function of that version's signature: it is called once, under
        the same handle as the run, so a version swap between the two cannot happen. Its
        errors are the request's own and carry no model/version suffix.
        """
        handle = self.lookup.handle(request.name, request.version, request.label)
        try:
            servable: Any = handle.servable
            try:
                signature = servable.signature(request.signature_name)
            except ServingError as exc:
                raise with_context(exc, handle.id) from None
            if not isinstance(inputs, Mapping):
                inputs = inputs(signature)
            started = self._start(handle.id, servable, signature, inputs, output_filter, timeout)
        except BaseException:
            handle.release()
            raise
        if isinstance(started, PredictResult):  # it ran inline: the lease ends here
            handle.release()
            return started
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
    ) -> concurrent.futures.Future[dict[str, np.ndarray]] | PredictResult:
        """Queues the run (batch scheduler or worker thread), or runs it inline and returns
        its result (see inline_runs)."""
        try:
            params = self.batching.parameters_for(servable_id) if self.batching else None
            if self.batching is not None and params is not None:
                return self.batching.submit(
                    servable_id, servable, signature, inputs, output_filter, params, timeout
                )
            started = self._inline_or_submit(
                servable_id, signature.name, inputs,
                servable.run, signature, inputs, output_filter, timeout_s=timeout,
            )  # fmt: skip
        except ServingError as exc:
            raise with_context(exc, servable_id) from None
        if isinstance(started, _Ran):
            return PredictResult(servable_id, signature.name, started.value)
        return started

    def _inline_or_submit(
        self,
        servable_id: ServableId,
        signature_name: str,
        inputs: Inputs,
        fn: Callable[..., T],
        *args: Any,
        **kwargs: Any,
    ) -> concurrent.futures.Future[T] | _Ran[T]:
        """``fn(*args, **kwargs)`` (an unbatched run of ``inputs`` on a signature) on a
        worker thread, or here on the event loop when the inline policy says it is short.
        Every run is timed for that policy. An inline run also executes TensorFlow's ops on
        this thread (``in_caller_thread``): for a run that short, handing them to
        TensorFlow's inter-op threads costs more than they do, and the deadline TensorFlow
        then no longer enforces matters little for a run the policy expects to be short."""
        if self.inline is None:
            return self._executor.submit(fn, *args, **kwargs)
        cost_key = (servable_id, signature_name)
        elements = sum(int(a.size) for a in inputs.values())
        if self.inline.should_inline(cost_key, elements):  # on this (event-loop) thread
            value = _timed(
                self.inline, cost_key, elements, False, fn, *args, in_caller_thread=True, **kwargs
            )
            metrics.labelled(metrics.INLINE_RUN_COUNT, servable_id.name).inc()
            return _Ran(value)
        return self._executor.submit(
            _timed, self.inline, cost_key, elements, True, fn, *args, **kwargs
        )

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
            future = self._submit_to_worker(call, handle.servable)
        except BaseException:
            handle.release()
            raise
        value = await _await_leased(handle, future, timeout, request)
        return ServableResult(handle.id, value)

    def _submit_to_worker(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """``fn(*args)`` on a worker thread, counted by the inline policy among the worker
        runs (a run it overlaps was not measured alone), with no run-time record: a
        MultiInference is several signatures in one call."""
        if self.inline is None:
            return self._executor.submit(fn, *args)
        return self._executor.submit(_on_worker, self.inline, fn, *args)

    async def run_planned(
        self,
        request: ModelRequest,
        make_plan: Callable[[Any], SignaturePlan[T]],
        timeout: float | None = None,
    ) -> ServableResult[T]:
        """Runs ``make_plan(servable)`` against the version ``request`` names: through the
        batch scheduler when the model is batched, else as an unbatched Predict (a worker
        thread, or inline when the signature is known to run within the inline limit).

        The plan is made on the event loop; batched, it is also finished there and only
        TensorFlow runs on the batch thread. Errors name the model and version.
        """
        handle = self.lookup.handle(request.name, request.version, request.label)
        finish: Callable[[dict[str, np.ndarray]], T] | None = None
        started: concurrent.futures.Future[Any] | _Ran[T]
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
                started = self._inline_or_submit(
                    handle.id, plan.signature_key, plan.inputs, plan.run, servable, timeout
                )
        except ServingError as exc:
            handle.release()
            raise with_context(exc, handle.id) from None
        except BaseException:
            handle.release()
            raise
        if isinstance(started, _Ran):  # it ran inline: the lease ends here
            handle.release()
            return ServableResult(handle.id, started.value)
        value = await _await_leased(handle, started, timeout, request)
        if finish is None:
            return ServableResult(handle.id, value)
        try:
            return ServableResult(handle.id, finish(value))
        except ServingError as exc:
            raise with_context(exc, handle.id) from None


class _Ran(Generic[T]):
    """A run that happened inline: its value, already there."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


def _timed(
    policy: InlinePolicy,
    cost_key: tuple[ServableId, str],
    elements: int,
    on_worker: bool,
    fn: Callable[..., T],
    *args: Any,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)``, its time recorded for the inline decision: inline on the
    event loop, or on a worker thread (where it counts as measured alone only if no other
    worker run overlapped it: see inline_runs)."""
    start = time.perf_counter()
    token = policy.worker_run_started() if on_worker else 0
    try:
        value = fn(*args, **kwargs)
    finally:
        alone = policy.worker_run_ended(token) if on_worker else True
    policy.record(cost_key, elements, time.perf_counter() - start, alone=alone)
    return value


def _on_worker(policy: InlinePolicy, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a worker, counted among the worker runs (see `_timed`)."""
    token = policy.worker_run_started()
    try:
        return fn(*args)
    finally:
        policy.worker_run_ended(token)


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
