"""TensorFlow SavedModel servables, loaded the way TensorFlow Serving loads them.

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
used only for runs known to be short: short batched runs (batching.session).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import config_pb2

from servingd.core import errors
from servingd.core.ids import ServableId, model_fields
from servingd.core.loader import ResourceEstimate
from servingd.core.thread_priority import lower_current_thread
from servingd.servables.codecs import (
    dtype_from_proto_enum,
    dtype_name,
    proto_enum_from_dtype,
    tensor_proto_to_ndarray,
)
from servingd.servables.signature_constants import (
    CLASSIFY_METHOD_NAME,
    DEFAULT_SERVING_SIGNATURE_DEF_KEY,
    INIT_OP_SIGNATURE_KEY,
    PREDICT_METHOD_NAME,
    REGRESS_METHOD_NAME,
)
from servingd.servables.warmup import WarmupOptions, run_warmup

log = logging.getLogger(__name__)


# TF Serving's resource estimate: total size of the files under the version dir x 1.2
# (util.cc, kResourceEstimateRAMMultiplier / kResourceEstimateRAMPadBytes).
RESOURCE_ESTIMATE_RAM_MULTIPLIER = 1.2
RESOURCE_ESTIMATE_RAM_PAD_BYTES = 0

# tf.errors.OpError.error_code (absl/grpc canonical codes) -> our exception class.
_TF_CODE_TO_ERROR: dict[int, type[errors.ServingError]] = {
    1: errors.Cancelled,
    2: errors.Unknown,
    3: errors.InvalidArgument,
    4: errors.DeadlineExceeded,
    5: errors.NotFound,
    6: errors.AlreadyExists,
    7: errors.PermissionDenied,
    8: errors.ResourceExhausted,
    9: errors.FailedPrecondition,
    10: errors.Aborted,
    11: errors.OutOfRange,
    12: errors.Unimplemented,
    13: errors.Internal,
    14: errors.Unavailable,
    15: errors.DataLoss,
}

_DEVICE_RE = re.compile(r"^(CPU|GPU|TPU)(?::(\d+))?$", re.IGNORECASE)


def _error_from_tf(exc: tf.errors.OpError, prefix: str = "") -> errors.ServingError:
    cls = _TF_CODE_TO_ERROR.get(int(exc.error_code), errors.Unknown)
    return cls(prefix + str(exc.message))


def timeout_bucket_ms(timeout_s: float | None) -> int:
    """0 (no limit) for None; else the smallest 2**(k/2) ms that is >= the timeout."""
    if timeout_s is None:
        return 0
    wanted = max(1.0, timeout_s * 1000.0)
    half_powers = math.ceil(2 * math.log2(wanted))
    return max(1, math.ceil(2 ** (half_powers / 2)))


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How one version's Session is configured (TF Serving's SessionBundleConfig, in part).

    device: None lets TensorFlow place ops (GPU when there is one); "CPU" hides GPUs from
    this session; "GPU" / "GPU:N" places the graph on that GPU (soft placement falls back
    to CPU for ops without a GPU kernel). gpu_memory_fraction 0 leaves TF's default.
    """

    tags: frozenset[str] = frozenset({"serve"})
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    device: str | None = None
    gpu_memory_fraction: float = 0.0
    allow_growth: bool = False
    # The loading thread's nice value (servingd.core.thread_priority): TensorFlow's compute
    # pools, created with the process's first Session, inherit it.
    thread_nice: int = 0

    def __post_init__(self) -> None:
        if self.device is not None and not _DEVICE_RE.match(self.device):
            raise errors.InvalidArgument(
                f"device must be CPU, GPU, GPU:N, TPU or TPU:N, got {self.device!r}"
            )
        if not 0.0 <= self.gpu_memory_fraction <= 1.0:
            raise errors.InvalidArgument(
                f"gpu_memory_fraction must be within [0, 1], got {self.gpu_memory_fraction}"
            )
        if self.intra_op_parallelism < 0 or self.inter_op_parallelism < 0:
            raise errors.InvalidArgument("parallelism settings must be >= 0 (0 = TF default)")

    @property
    def device_scope(self) -> str | None:
        """The graph device to pin the imported model to, or None to leave placement to TF."""
        m = _DEVICE_RE.match(self.device or "")
        if m is None or m.group(1).upper() == "CPU":
            return None
        return f"/device:{m.group(1).upper()}:{m.group(2) or 0}"

    def config_proto(self) -> config_pb2.ConfigProto:
        config = config_pb2.ConfigProto(allow_soft_placement=True)
        config.intra_op_parallelism_threads = self.intra_op_parallelism
        config.inter_op_parallelism_threads = self.inter_op_parallelism
        if self.gpu_memory_fraction:
            config.gpu_options.per_process_gpu_memory_fraction = self.gpu_memory_fraction
        if self.allow_growth:
            config.gpu_options.allow_growth = True
        if self.device is not None and self.device.upper().startswith("CPU"):
            config.device_count["GPU"] = 0
        return config


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One signature tensor: graph tensor name, dtype, shape (-1 unknown dim, None unknown rank).

    ``dtype`` is None when the DataType has no numpy form (e.g. DT_INVALID of the init op).
    """

    name: str
    dtype_enum: int
    dtype: np.dtype[Any] | None
    shape: tuple[int, ...] | None

    @classmethod
    def from_tensor_info(cls, info: Any) -> TensorSpec:
        try:
            dtype: np.dtype[Any] | None = dtype_from_proto_enum(int(info.dtype))
        except errors.InvalidArgument:
            dtype = None
        ts = info.tensor_shape
        shape = None if ts.unknown_rank else tuple(int(d.size) for d in ts.dim)
        return cls(name=str(info.name), dtype_enum=int(info.dtype), dtype=dtype, shape=shape)

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype_enum)

    def accepts_dtype(self, dtype: np.dtype[Any]) -> bool:
        if self.dtype is None:
            return False
        if self.dtype.kind == "O":  # DT_STRING: object arrays of bytes, or fixed-width bytes
            return dtype.kind in "OS"
        return dtype == self.dtype

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            want < 0 or want == got for want, got in zip(self.shape, shape, strict=True)
        )

    def shape_str(self) -> str:
        return "unknown rank" if self.shape is None else str(list(self.shape))


def _braces(names: Sequence[str] | set[str]) -> str:
    return "{" + ",".join(sorted(names)) + "}"


@dataclass(frozen=True, slots=True)
class Signature:
    """A SignatureDef in numpy terms: what to feed, what comes back, with Predict's checks."""

    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    defaults: Mapping[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_signature_def(cls, name: str, sig: Any) -> Signature:
        return cls(
            name=name,
            method_name=str(sig.method_name),
            inputs=MappingProxyType(
                {a: TensorSpec.from_tensor_info(t) for a, t in sorted(sig.inputs.items())}
            ),
            outputs=MappingProxyType(
                {a: TensorSpec.from_tensor_info(t) for a, t in sorted(sig.outputs.items())}
            ),
            defaults=MappingProxyType(
                {a: tensor_proto_to_ndarray(p) for a, p in sorted(sig.defaults.items())}
            ),
        )

    def validate_inputs(
        self, inputs: Mapping[str, np.ndarray], *, strict_shapes: bool = False
    ) -> list[np.ndarray]:
        """Check a Predict request's inputs; return the feeds in ``self.inputs`` order.

        The checks and messages are TF Serving's (predict_util.cc, saved_model/util.cc):
        method name, input count, every signature alias present (or defaulted), no
        unknown alias. Then, which TF Serving leaves to the runtime: each dtype must equal
        the signature's. Shapes are checked only with ``strict_shapes`` (rank and known
        dims), since TF Serving feeds tensors by name without a shape check and popular
        requests depend on that (``{"instances": [1.0, 2.0, 5.0]}`` to half_plus_two,
        whose ``x`` is ``[-1, 1]``); without it, a shape the graph cannot take fails in
        TensorFlow with its own INVALID_ARGUMENT.
        """
        if self.method_name not in (PREDICT_METHOD_NAME, CLASSIFY_METHOD_NAME, REGRESS_METHOD_NAME):
            raise errors.Internal(
                "Expected prediction signature method_name to be one of "
                f"{{{PREDICT_METHOD_NAME}, {CLASSIFY_METHOD_NAME}, {REGRESS_METHOD_NAME}}}. "
                f"Was: {self.method_name}"
            )
        sent = set(inputs)
        wanted = set(self.inputs)
        if len(sent) > len(wanted) or (len(sent) < len(wanted) and not self.defaults):
            raise errors.InvalidArgument(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({_braces(sent)}) != len({_braces(wanted)}). "
                f"Sent extra: {_braces(sent - wanted)}. "
                f"Missing but required: {_braces(wanted - sent)}."
            )
        feeds: list[np.ndarray] = []
        for alias, spec in self.inputs.items():
            if alias in inputs:
                value = np.asarray(inputs[alias])
            elif alias in self.defaults:
                value = self.defaults[alias]
            else:
                raise errors.InvalidArgument(
                    f"Signature input alias: {alias}(feed name: {spec.name}) not found in "
                    "request and no default value provided. Inputs expected to be in the "
                    f"request {_braces(sent)}, or default input alias set: "
                    + ",".join(sorted(self.defaults))
                )
            if not spec.accepts_dtype(value.dtype):
                got = value.dtype.name
                with contextlib.suppress(errors.InvalidArgument):
                    got = dtype_name(proto_enum_from_dtype(value.dtype))
                raise errors.InvalidArgument(
                    f"input tensor alias {alias} (tensor {spec.name}): expected dtype "
                    f"{spec.dtype_name} but got {got}"
                )
            if spec.dtype is not None and spec.dtype.kind == "O" and value.dtype.kind == "S":
                value = value.astype(object)
            if strict_shapes and not spec.accepts_shape(value.shape):
                raise errors.InvalidArgument(
                    f"input tensor alias {alias} (tensor {spec.name}): expected shape "
                    f"{spec.shape_str()} but got {list(value.shape)}"
                )
            feeds.append(value)
        unknown = sent - wanted
        if unknown:
            raise errors.InvalidArgument(
                "Inputs contains invalid name. Used request inputs: "
                + ",".join(sorted(sent & wanted))
                + ", request input: "
                + ",".join(sorted(sent))
            )
        return feeds

    def validate_output_filter(self, output_filter: Sequence[str]) -> tuple[str, ...]:
        """Output aliases to fetch, in order; all of them (sorted) when the filter is empty."""
        seen: list[str] = []
        for alias in output_filter:
            if alias not in self.outputs:
                raise errors.InvalidArgument(
                    f"output tensor alias not found in signature: {alias} "
                    f"Outputs expected to be in the set {_braces(set(self.outputs))}."
                )
            if alias in seen:
                raise errors.InvalidArgument(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return tuple(seen) if seen else tuple(self.outputs)


class SavedModelServable:
    """One loaded SavedModel version: its signatures and a thread-safe ``run``."""

    def __init__(
        self, id: ServableId, path: str, session: tf.compat.v1.Session, meta_graph_def: Any
    ) -> None:
        self.id = id
        self.path = path
        self.meta_graph_def = meta_graph_def
        self._session: tf.compat.v1.Session | None = session
        self._signatures = {
            name: Signature.from_signature_def(name, sig)
            for name, sig in meta_graph_def.signature_def.items()
        }
        # (in_caller_thread, timeout bucket ms, feeds, fetches) -> the session's callable
        self._callables: dict[
            tuple[bool, int, tuple[str, ...], tuple[str, ...]], Callable[..., Any]
        ] = {}
        self._callables_lock = threading.Lock()

    def signature_def_map(self, *, include_init_op: bool = True) -> Mapping[str, Any]:
        """The SignatureDefs by key, as GetModelMetadata returns them.

        TF Serving's metadata copies every SignatureDef of the MetaGraphDef, the TF2
        ``__saved_model_init_op`` pseudo-signature included; ``include_init_op=False``
        leaves that one out.
        """
        sigs = self.meta_graph_def.signature_def
        return MappingProxyType(
            {k: sigs[k] for k in sorted(sigs) if include_init_op or k != INIT_OP_SIGNATURE_KEY}
        )

    def signature(self, name: str = "") -> Signature:
        """The named signature; "" means ``serving_default`` (TF Serving's rule)."""
        key = name or DEFAULT_SERVING_SIGNATURE_DEF_KEY
        try:
            return self._signatures[key]
        except KeyError:
            raise errors.FailedPrecondition(f'Serving signature key "{key}" not found.') from None

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
        feeds = signature.validate_inputs(inputs, strict_shapes=strict_shapes)
        aliases = signature.validate_output_filter(output_filter)
        feed_names = tuple(spec.name for spec in signature.inputs.values())
        fetch_names = tuple(signature.outputs[a].name for a in aliases)
        fn = self._callable(feed_names, fetch_names, timeout_s, in_caller_thread)
        try:
            results = fn(*feeds)
        except tf.errors.OpError as exc:
            raise _error_from_tf(exc) from exc
        except RuntimeError as exc:  # the session was closed under us
            raise errors.Unavailable(f"Servable {self.id} is not available: {exc}") from exc
        return {a: np.asarray(r) for a, r in zip(aliases, results, strict=True)}

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetch_names: Sequence[str],
        *,
        timeout_s: float | None = None,
        in_caller_thread: bool = False,
    ) -> list[np.ndarray]:
        """Feed graph tensors by name and fetch others, with no signature checks.

        For callers that did their own checks (the tf.Example APIs: Classify, Regress,
        MultiInference), as TF Serving's ``Session::Run`` with tensor names. Safe from many
        threads; TensorFlow errors become ServingErrors with TF's code; ``timeout_s`` and
        ``in_caller_thread`` as in ``run``.
        """
        feed_names = tuple(feeds)
        fn = self._callable(feed_names, tuple(fetch_names), timeout_s, in_caller_thread)
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


class SavedModelLoader:
    """Loader (servingd.core.loader) for one SavedModel version directory."""

    def __init__(
        self,
        id: ServableId,
        path: str,
        options: SessionOptions | None = None,
        warmup: WarmupOptions | None = None,
    ) -> None:
        """``warmup`` None or disabled: no warmup (``--enable_model_warmup=false``)."""
        self.id = id
        self.path = path
        self.options = options or SessionOptions()
        self.warmup = warmup
        self._servable: SavedModelServable | None = None

    def _fail(self, cls: type[errors.ServingError], cause: object) -> errors.ServingError:
        return cls(f"Loading servable: {self.id} from {self.path} failed: {cause}")

    def estimate_resources(self) -> ResourceEstimate:
        """TF Serving's estimate: bytes of all files under the version dir x 1.2."""
        total = 0
        walk_errors: list[OSError] = []
        if not os.path.isdir(self.path):
            raise self._fail(errors.NotFound, "the version directory does not exist")
        for root, _dirs, files in os.walk(self.path, onerror=walk_errors.append):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError as exc:
                    walk_errors.append(exc)
        if walk_errors:
            raise self._os_error(walk_errors[0])
        ram = int(total * RESOURCE_ESTIMATE_RAM_MULTIPLIER) + RESOURCE_ESTIMATE_RAM_PAD_BYTES
        return ResourceEstimate(ram_bytes=ram)

    def _os_error(self, exc: OSError) -> errors.ServingError:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return self._fail(errors.NotFound, exc)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return self._fail(errors.PermissionDenied, exc)
        return self._fail(errors.Unknown, exc)

    def load(self) -> None:
        if self._servable is not None:
            raise errors.FailedPrecondition(f"Servable {self.id} is already loaded")
        if not os.path.isdir(self.path):
            raise self._fail(errors.NotFound, "the version directory does not exist")
        graph = tf.Graph()
        lower_current_thread(self.options.thread_nice)
        session = tf.compat.v1.Session(graph=graph, config=self.options.config_proto())
        device = self.options.device_scope
        try:
            with graph.as_default(), graph.device(device) if device else contextlib.nullcontext():
                meta_graph_def = tf.compat.v1.saved_model.loader.load(
                    session, set(self.options.tags), self.path, clear_devices=device is not None
                )
            servable = SavedModelServable(self.id, self.path, session, meta_graph_def)
            if self.warmup is not None and self.warmup.enabled:
                # Before AVAILABLE, as TF Serving: the first clients find a warm model.
                run_warmup(servable, self.path, self.warmup)
        except BaseException as exc:
            session.close()
            raise self._load_error(exc) from exc
        self._servable = servable
        log.info(
            "Loaded servable %s from %s (signatures: %s)",
            self.id,
            self.path,
            ", ".join(sorted(servable.signature_def_map(include_init_op=False))),
            extra=model_fields(self.id),
        )

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

    def servable(self) -> SavedModelServable:
        if self._servable is None:
            raise errors.FailedPrecondition(f"Servable {self.id} is not loaded")
        return self._servable

    def unload(self) -> None:
        servable, self._servable = self._servable, None
        if servable is not None:
            servable.close()
            log.info("Unloaded servable %s", self.id, extra=model_fields(self.id))
