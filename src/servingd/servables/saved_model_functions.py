"""SavedModel versions run as TensorFlow functions, so that a run can be stopped.

A ``tf.compat.v1.Session`` run cannot be stopped from outside (only its
``RunOptions.timeout_in_ms`` or closing the whole Session ends it): a client that cancels
would leave its run computing until the deadline, or forever. This runtime (the default,
``saved_model_runtime: functions``) runs the same graph as TensorFlow functions instead,
each call with its own C++ cancellation manager, started by the call's token
(core.cancellation: the request's, or its batch's):

* load: ``load_v1_in_v2``'s loader (what ``tf.saved_model.load`` uses for TF1 exports)
  imports the MetaGraph into a ``wrap_function`` graph, restores the variables and runs the
  init op. It serves TF2 exports too, because it keeps TF1's view of the graph: signatures
  are tensor names, and ``prune(feeds, fetches)`` makes a function for any (feeds,
  fetches) (Predict, the tf.Example APIs, MultiInference), cached per key.
* run: the pruned function's op is executed with ``TFE_Py_ExecuteCancelable`` and the
  run's manager; a cancel or the deadline stops its ops. The deadline is exact (the Session
  rounds it to a half-power of two of milliseconds).
* unload: the loader gives the variables shared names in the eager context's resource
  manager, where they would outlive every Python reference; ``close`` destroys them.
* fallback: a graph with TF1 reference variables (``VariableV2``: TF Serving's
  ``saved_model_counter``) cannot be a function (no ref outputs); the loader keeps it on a
  Session (servables.saved_model), which says so in the log.

The eager context's thread pools and GPU options are the process's: they are set from the
settings before the first version loads (`configure_context`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import tensorflow as tf
from tensorflow.python import pywrap_tfe
from tensorflow.python.eager import cancellation as tf_cancellation
from tensorflow.python.eager import context, core, lift_to_graph
from tensorflow.python.framework import constant_op, ops
from tensorflow.python.ops import gen_resource_variable_ops
from tensorflow.python.saved_model import load_v1_in_v2

from servingd.core import cancellation, errors
from servingd.core.ids import ServableId
from servingd.servables.servable import Call, Workers
from servingd.servables.session_options import SessionOptions
from servingd.servables.signatures import Signature, SignatureLookup

T = TypeVar("T")
log = logging.getLogger(__name__)

REF_VARIABLE_OPS = frozenset({"Variable", "VariableV2", "TemporaryVariable"})


def has_reference_variables(meta_graph_def: Any) -> bool:
    """TF1 reference variables: a function can neither output a ref tensor nor share their
    state with the init op, so such graphs stay on a Session."""
    return any(node.op in REF_VARIABLE_OPS for node in meta_graph_def.graph_def.node)


_configured = threading.Lock()


def configure_context(options: SessionOptions) -> None:
    """Gives the eager context the settings' threads and GPU memory options before it
    starts (it starts once per process; later calls change nothing)."""
    with _configured:
        ctx = context.context()
        if ctx._context_handle is not None:  # already started
            return
        config = options.config_proto()
        # A model on CPU hides the GPUs from its Session only; not from the whole process.
        if "GPU" in config.device_count:
            del config.device_count["GPU"]
        ctx._config = tf.compat.v1.ConfigProto.FromString(config.SerializeToString())
        ctx.ensure_initialized()


def _on_device(device: str | None) -> contextlib.AbstractContextManager[Any]:
    """TensorFlow's device scope for `device`; none (TensorFlow places) for None."""
    return context.device(device) if device else contextlib.nullcontext()


class _Function:
    """One pruned function, called directly with a cancellation manager."""

    __slots__ = ("captures", "dtypes", "inline_ok", "name", "num_outputs", "pruned")

    def __init__(self, pruned: Any) -> None:
        self.inline_ok = True  # the single-threaded executor takes it (in_caller_thread)
        self.pruned = pruned  # keeps the function registered: TF removes it with its owner
        atomic = pruned._inference_function
        self.name: str = atomic.name.decode() if isinstance(atomic.name, bytes) else atomic.name
        self.num_outputs = len(atomic.function_type.flat_outputs)
        self.captures = list(pruned.captured_inputs)
        inputs = pruned.inputs[: len(pruned.inputs) - len(self.captures)]
        self.dtypes = [(t.dtype, t.dtype.as_numpy_dtype, t.dtype.as_datatype_enum) for t in inputs]


def _eager_input(value: Any, dtype: tuple[Any, Any, int]) -> Any:
    """A request's array as an eager tensor in host memory. The function call places it
    where its ops run. Naming a device here costs a copy per input, even to the CPU:
    a half_plus_two run went from 120 µs to over 200."""
    tf_dtype, np_dtype, enum = dtype
    if isinstance(value, np.ndarray) and value.dtype == np_dtype and np_dtype is not object:
        return ops.EagerTensor(value, None, enum)
    with context.device("/device:CPU:0"):
        return constant_op.constant(value, dtype=tf_dtype)


class FunctionSavedModelServable(SignatureLookup):
    """One SavedModel version run as cancellable TF functions (servables.servable.Servable)."""

    def __init__(
        self, id: ServableId, path: str, root: Any, meta_graph_def: Any, device: str | None
    ) -> None:
        super().__init__(meta_graph_def)
        self.id = id
        self.path = path
        self._root: Any = root
        self._device = device
        self._functions: dict[tuple[tuple[str, ...], tuple[str, ...]], _Function] = {}
        self._lock = threading.Lock()
        self._ctx = context.context()
        options = self._ctx.function_call_options.as_attrs()
        self._attrs = tuple(itertools.chain(*options.items()))
        # in_caller_thread: TensorFlow's single-threaded executor runs the function's ops on
        # the calling thread (no inter-op hand-off), as the Session's inter_op_thread_pool -1.
        options["executor_type"] = "SINGLE_THREADED_EXECUTOR"
        self._inline_attrs = tuple(itertools.chain(*options.items()))

    # -- the Servable contract ----------------------------------------------------------

    def start(
        self, call: Call[T], timeout_s: float | None, workers: Workers
    ) -> cancellation.CancellableFuture[T]:
        return cancellation.start_cancellable(workers.submit, lambda: call.run(self, timeout_s))

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        strict_shapes: bool = False,
        timeout_s: float | None = None,
        in_caller_thread: bool = False,
    ) -> dict[str, np.ndarray]:
        tensors = signature.tensor_run(inputs, output_filter, strict_shapes=strict_shapes)
        results = self._execute(
            tensors.feed_names, tensors.fetch_names, tensors.feeds, timeout_s, in_caller_thread
        )
        return dict(zip(tensors.aliases, results, strict=True))

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetch_names: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> list[np.ndarray]:
        feed_names = tuple(feeds)
        return self._execute(
            feed_names, tuple(fetch_names), [feeds[n] for n in feed_names], timeout_s
        )

    def close(self) -> None:
        """Drops the functions and destroys the version's resources (its variables, tables)."""
        with self._lock:
            self._functions.clear()
            root, self._root = self._root, None
        if root is None:
            return
        # The resources are made by handle ops in the graph (VarHandleOp, HashTableV2, ...:
        # no inputs, one resource output); a function fetching them gives eager handles.
        creators = [
            op.outputs[0]
            for op in root.graph.get_operations()
            if not op.inputs and len(op.outputs) == 1 and op.outputs[0].dtype == tf.resource
        ]
        if not creators:
            return
        try:
            for handle in root.prune([], creators)():
                gen_resource_variable_ops.destroy_resource_op(handle, ignore_lookup_error=True)
        except Exception as exc:  # a leak, not a failed unload
            log.warning("Servable %s: its resources were not all freed: %s", self.id, exc)

    # -- running --------------------------------------------------------------------------

    def _function(self, feed_names: tuple[str, ...], fetch_names: tuple[str, ...]) -> _Function:
        key = (feed_names, fetch_names)
        fn = self._functions.get(key)
        if fn is not None:
            return fn
        with self._lock:
            fn = self._functions.get(key)
            if fn is None:
                root = self._root
                if root is None:
                    raise errors.Unavailable(f"Servable {self.id} has been unloaded")
                try:
                    with _on_device(self._device):
                        pruned = root.prune(list(feed_names), list(fetch_names))
                except lift_to_graph.UnliftableError as exc:
                    raise errors.InvalidArgument(
                        f"a fetched tensor needs a placeholder that is not fed: {exc}"
                    ) from exc
                except (KeyError, ValueError) as exc:
                    raise errors.InvalidArgument(str(exc)) from exc
                fn = _Function(pruned)
                self._functions[key] = fn
            return fn

    def _execute(
        self,
        feed_names: tuple[str, ...],
        fetch_names: tuple[str, ...],
        values: list[Any],
        timeout_s: float | None,
        in_caller_thread: bool = False,
    ) -> list[np.ndarray]:
        fn = self._function(feed_names, fetch_names)
        inline = in_caller_thread and fn.inline_ok
        # A request's run (or a batch's) has its token; a direct run (warmup, tests) its own.
        token = cancellation.current_token() or cancellation.CancelToken()
        manager = tf_cancellation.CancellationManager()
        stop = manager.start_cancel
        token.on_cancel(stop)
        entry = None if timeout_s is None else cancellation.DEADLINES.add(timeout_s, token)
        ctx = self._ctx
        try:
            with _on_device(self._device):
                device = ctx.device_name
                inputs = [_eager_input(v, d) for v, d in zip(values, fn.dtypes, strict=True)]
                outputs = pywrap_tfe.TFE_Py_ExecuteCancelable(
                    ctx._handle,
                    device,
                    fn.name,
                    inputs + fn.captures,
                    self._inline_attrs if inline else self._attrs,
                    manager._impl,
                    fn.num_outputs,
                )
        except Exception as exc:
            if inline and not token.cancelled and "ingle" in str(exc):
                # Not for this graph (TF1 control flow, ...): the inter-op pool from now on.
                fn.inline_ok = False
                retry = True
            else:
                raise self._error(exc, token, timeout_s) from exc
        else:
            retry = False
        finally:
            token.discard(stop)
            if entry is not None:
                cancellation.DEADLINES.done(entry)
        if retry:
            return self._execute(feed_names, fetch_names, values, timeout_s)
        return [t._numpy() for t in outputs]

    def _error(
        self, exc: Exception, token: cancellation.CancelToken, timeout_s: float | None
    ) -> Exception:
        if isinstance(exc, errors.ServingError):
            return exc
        if token.reason == "deadline":
            return errors.DeadlineExceeded(
                f"Deadline exceeded: the run of {self.id} took over {timeout_s} s and was stopped"
            )
        if token.reason == "cancelled":
            return errors.Cancelled(f"The run of {self.id} was cancelled by the client")
        if isinstance(exc, core._NotOkStatusException):
            exc = core._status_to_exception(exc)
        if isinstance(exc, tf.errors.OpError):
            return errors.error_class_for_tf_code(int(exc.error_code))(str(exc.message))
        if isinstance(exc, (TypeError, ValueError)):
            return errors.InvalidArgument(str(exc))
        return exc


class _Loader(load_v1_in_v2._EagerSavedModelLoader):  # type: ignore[misc]
    """load_v1_in_v2's loader without its signature functions: it prunes every signature
    at load, the init op's too (TF Serving's half_plus_two_tf2 has one that needs an asset
    placeholder: UnliftableError); this runtime prunes what a request asks, on first use."""

    def _extract_signatures(self, wrapped: Any, meta_graph_def: Any) -> dict[str, Any]:
        return {}


def load_function_servable(
    id: ServableId, path: str, tags: set[str], device: str | None, meta_graph_def: Any
) -> FunctionSavedModelServable:
    """Imports `path` the way load_v1_in_v2 does (variables restored, init op run)."""
    with _on_device(device):
        root = _Loader(path).load(tags)
    return FunctionSavedModelServable(id, path, root, meta_graph_def, device)
