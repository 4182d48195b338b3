"""TensorFlow SavedModel servables: the loader, and the Session runtime.

The loader runs a version as cancellable TensorFlow functions
(servables.saved_model_functions) unless ``saved_model_runtime: session`` is set or the
graph has TF1 reference variables; then as TensorFlow Serving does, in a Session:

One version = one fresh ``tf.Graph`` + ``tf.compat.v1.Session``; the SavedModel is imported
into it with ``tf.compat.v1.saved_model.loader.load`` (which restores the variables and runs
the init / main op, ``__saved_model_init_op`` included). That is what makes TF1 exports,
TF2 exports and TF1 models with reference variables (``saved_model_counter``) all work, and
it needs no global ``disable_eager_execution()``: graph mode comes from the explicit Graph.

Signatures run through their tensor names with a C++ callable per (signature, feeds,
fetches) (``Session._make_callable_from_options``), created once and reused. Like TensorFlow
Serving's ``Session::Run``, that path does no Python-side shape check, so requests TF
Serving accepts (``x=[1,2,5]`` against a ``[-1,1]`` or ``[1]`` placeholder) run here too; it
releases the GIL and is safe to call from many threads at once.

A run either hands the graph's ops to TensorFlow's inter-op threads (the default) or, with
``in_caller_thread``, executes them on the calling thread (TensorFlow's
``RunOptions.inter_op_thread_pool = -1``; ops still use the intra-op pool inside, a big
MatMul stays parallel). For a short run the hand-off costs more than the run: measured here
(2 vCPU), half_plus_two batch 1 took 150-400 us of CPU per run through the pool and 26-166
in the caller thread, the MLP 460-940 against 360-530, with idle gaps between runs as a
server has them. TensorFlow enforces no timeout on a run in the caller thread, so it is
used only for runs known to be short: short batched runs (batching.batch_processor).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import config_pb2

from servingd.core import errors
from servingd.core.ids import ServableId, model_fields
from servingd.core.thread_priority import lower_current_thread
from servingd.servables.servable import RunsOnWorkers, Servable
from servingd.servables.session_options import SessionOptions
from servingd.servables.signatures import Signature, SignatureLookup, TensorSpec
from servingd.servables.version_dir import VersionDirLoader
from servingd.servables.warmup import WarmupOptions

__all__ = ["SavedModelLoader", "SavedModelServable", "SessionOptions", "Signature", "TensorSpec"]

log = logging.getLogger(__name__)


def _error_from_tf(exc: tf.errors.OpError, prefix: str = "") -> errors.ServingError:
    cls = errors.error_class_for_tf_code(int(exc.error_code))
    return cls(prefix + str(exc.message))


def timeout_bucket_ms(timeout_s: float | None) -> int:
    """0 (no limit) for None; else the smallest 2**(k/2) ms that is >= the timeout."""
    if timeout_s is None:
        return 0
    wanted = max(1.0, timeout_s * 1000.0)
    half_powers = math.ceil(2 * math.log2(wanted))
    return max(1, math.ceil(2 ** (half_powers / 2)))


class SavedModelServable(RunsOnWorkers, SignatureLookup):
    """One SavedModel version in a Session: its signatures and a thread-safe ``run``
    (servables.servable.Servable)."""

    def __init__(
        self, id: ServableId, path: str, session: tf.compat.v1.Session, meta_graph_def: Any
    ) -> None:
        super().__init__(meta_graph_def)
        self.id = id
        self.path = path
        self._session: tf.compat.v1.Session | None = session
        # (in_caller_thread, timeout bucket ms, feeds, fetches) -> the session's callable
        self._callables: dict[
            tuple[bool, int, tuple[str, ...], tuple[str, ...]], Callable[..., Any]
        ] = {}
        self._callables_lock = threading.Lock()

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
        """Validate, feed and fetch; returns output alias -> array. Safe from many threads.

        With `timeout_s`, TensorFlow cancels the run once it is over (DEADLINE_EXCEEDED), so
        a caller who is gone does not keep a core busy. The limit is rounded up to a
        half-power of two of milliseconds (at most 1.42x late) to keep few callables.
        `in_caller_thread`: the ops run on this thread (see the module doc); `timeout_s` is
        then not enforced.
        """
        tensors = signature.tensor_run(inputs, output_filter, strict_shapes=strict_shapes)
        fn = self._callable(tensors.feed_names, tensors.fetch_names, timeout_s, in_caller_thread)
        try:
            results = fn(*tensors.feeds)
        except tf.errors.OpError as exc:
            raise _error_from_tf(exc) from exc
        except RuntimeError as exc:  # the session was closed under us
            raise errors.Unavailable(f"Servable {self.id} is not available: {exc}") from exc
        return {a: np.asarray(r) for a, r in zip(tensors.aliases, results, strict=True)}

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetch_names: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> list[np.ndarray]:
        """Feed graph tensors by name and fetch others, with no signature checks.

        For callers that did their own checks (the tf.Example APIs: Classify, Regress,
        MultiInference), as TF Serving's ``Session::Run`` with tensor names. Safe from many
        threads; TensorFlow errors become ServingErrors with TF's code; ``timeout_s`` as in
        ``run``.
        """
        feed_names = tuple(feeds)
        fn = self._callable(feed_names, tuple(fetch_names), timeout_s)
        try:
            results = fn(*(feeds[name] for name in feed_names))
        except tf.errors.OpError as exc:
            raise _error_from_tf(exc) from exc
        except RuntimeError as exc:  # the session was closed under us
            raise errors.Unavailable(f"Servable {self.id} is not available: {exc}") from exc
        return [np.asarray(r) for r in results]

    def _callable(
        self,
        feed_names: tuple[str, ...],
        fetch_names: tuple[str, ...],
        timeout_s: float | None = None,
        in_caller_thread: bool = False,
    ) -> Callable[..., Any]:
        # TensorFlow ignores the timeout of a run in the caller thread: one callable serves all.
        timeout_ms = 0 if in_caller_thread else timeout_bucket_ms(timeout_s)
        key = (in_caller_thread, timeout_ms, feed_names, fetch_names)
        fn = self._callables.get(key)
        if fn is not None:
            return fn
        with self._callables_lock:
            fn = self._callables.get(key)
            if fn is None:
                session = self._session
                if session is None:
                    raise errors.Unavailable(f"Servable {self.id} has been unloaded")
                options = config_pb2.CallableOptions()
                options.feed.extend(feed_names)
                options.fetch.extend(fetch_names)
                if in_caller_thread:
                    options.run_options.inter_op_thread_pool = -1
                if timeout_ms:
                    options.run_options.timeout_in_ms = timeout_ms
                try:
                    fn = session._make_callable_from_options(options)
                except tf.errors.OpError as exc:
                    raise _error_from_tf(exc) from exc
                self._callables[key] = fn
            return fn

    def close(self) -> None:
        """Release the session (the loader's unload)."""
        with self._callables_lock:
            self._callables.clear()
            session, self._session = self._session, None
        if session is not None:
            session.close()


class SavedModelLoader(VersionDirLoader[Servable]):
    """Loader (servingd.core.loader) for one SavedModel version directory."""

    def __init__(
        self,
        id: ServableId,
        path: str,
        options: SessionOptions | None = None,
        warmup: WarmupOptions | None = None,
    ) -> None:
        super().__init__(id, path, warmup)
        self.options = options or SessionOptions()

    def load(self) -> None:
        self._check_not_loaded()
        if not os.path.isdir(self.path):
            raise self._fail(errors.NotFound, "the version directory does not exist")
        lower_current_thread(self.options.thread_nice)
        if self.options.runtime == "functions" and self._load_functions():
            return
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=self.options.config_proto())
        device = self.options.device_scope
        try:
            with graph.as_default(), graph.device(device) if device else contextlib.nullcontext():
                meta_graph_def = tf.compat.v1.saved_model.loader.load(
                    session, set(self.options.tags), self.path, clear_devices=device is not None
                )
            servable = SavedModelServable(self.id, self.path, session, meta_graph_def)
            self._warm_up(servable)
        except BaseException as exc:
            session.close()
            raise self._load_error(exc) from exc
        self._loaded(servable, "a Session")

    def _loaded(self, servable: Servable, runtime: str) -> None:
        self._servable = servable
        log.info(
            "Loaded servable %s from %s as %s (signatures: %s)",
            self.id,
            self.path,
            runtime,
            ", ".join(sorted(servable.signature_def_map(include_init_op=False))),
            extra=model_fields(self.id),
        )

    def _load_functions(self) -> bool:
        """The version as cancellable functions; False (nothing loaded) for a graph that
        must stay in a Session."""
        from tensorflow.python.saved_model import loader_impl

        from servingd.servables import saved_model_functions as functions

        functions.configure_context(self.options)
        device = self.options.device_scope
        if device is None and (self.options.device or "").upper().startswith("CPU"):
            device = "/device:CPU:0"
        try:
            meta_graph_def = loader_impl.SavedModelLoader(self.path).get_meta_graph_def_from_tags(
                set(self.options.tags)
            )
            if functions.has_reference_variables(meta_graph_def):
                log.warning(
                    "Servable %s has TF1 reference variables: it runs in a Session, whose runs "
                    "only their deadline stops",
                    self.id,
                    extra=model_fields(self.id),
                )
                return False
            servable = functions.load_function_servable(
                self.id, self.path, set(self.options.tags), device, meta_graph_def
            )
            self._warm_up(servable)
        except BaseException as exc:
            raise self._load_error(exc) from exc
        self._loaded(servable, "functions")
        return True

    def _load_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, Exception) and not os.path.isdir(self.path):
            # Whatever TensorFlow tripped on, the cause is that the directory went away
            # (deleted or renamed by hand while loading): say so, with the detail.
            return self._fail(
                errors.NotFound,
                f"the version directory disappeared during the load ({type(exc).__name__}: {exc})",
            )
        if isinstance(exc, errors.ServingError):
            return self._fail(type(exc), exc)
        if isinstance(exc, tf.errors.NotFoundError) and "RestoreV2" in str(exc.message):
            # The function runtime restores with RestoreV2 (the Session's loader checks first).
            return self._fail(errors.NotFound, f"cannot restore the variables: {exc.message}")
        if isinstance(exc, tf.errors.OpError):
            return _error_from_tf(exc, f"Loading servable: {self.id} from {self.path} failed: ")
        if isinstance(exc, DecodeError):
            return self._fail(errors.DataLoss, f"cannot parse the SavedModel proto: {exc}")
        if isinstance(exc, OSError):
            if exc.errno is None and "Cannot parse file" in str(exc):
                return self._fail(errors.DataLoss, exc)
            if exc.errno is None and "SavedModel file does not exist" in str(exc):
                return self._fail(errors.NotFound, exc)  # retrying cannot create it
            return self._os_error(exc)
        if isinstance(exc, ValueError) and "not a valid checkpoint" in str(exc):
            return self._fail(errors.NotFound, f"cannot restore the variables: {exc}")
        if isinstance(exc, RuntimeError) and "could not be found in SavedModel" in str(exc):
            return self._fail(errors.NotFound, exc)
        if isinstance(exc, Exception):
            return self._fail(errors.Unknown, f"{type(exc).__name__}: {exc}")
        return exc  # KeyboardInterrupt and the like pass through untouched
