"""TF Lite servables: a version directory's ``model.tflite`` run by LiteRT (``ai-edge-litert``).

Behind the same contract as the SavedModel servable (``servables.servable.Servable``), so
the gRPC and REST front ends, batching, warmup and the tf.Example APIs use it unchanged.

Signatures are TF Serving's (tflite_session.cc): the SignatureDef map stored in the
flatbuffer's metadata when there is one (a tensor name that is not in the model is
retried without its ``:N`` suffix, as TF Serving does for older converters), else one
``serving_default`` Predict signature whose aliases are the model's input and output tensor
names (without ``:N``). Two differences. Between those two sources, servingd reads the
model's own signature (what ``TFLiteConverter`` writes from a SavedModel's
``serving_default``, LiteRT's SignatureRunner) when it has exactly one and it names the
model's inputs and outputs: the aliases are then the SavedModel's (``images``, not
``serving_default_images``), so a model converted from a SavedModel takes the same requests.
And a tensor's shape in a signature servingd makes is the model's shape signature (``-1``
for a dynamic dimension) where TF Serving shows the dimensions the interpreter was first
allocated with (``1`` there).

An interpreter runs one call at a time, so a version holds a pool of them (``interpreters``);
a run leases one, resizes its inputs when the request's shapes differ from the last ones it
ran (TF Serving's rule: the input tensor takes the request's shape), feeds, invokes and
copies the outputs out. A model whose batch dimension is fixed runs a request (or a batch)
of another number of rows in slices of its size instead (``FixedBatch``). LiteRT releases
the GIL while it invokes, so runs on different interpreters proceed in parallel. XNNPACK,
LiteRT's CPU delegate, is applied by default.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate
from google.protobuf.message import DecodeError

from servingd.core import errors
from servingd.core.ids import ServableId, model_fields
from servingd.core.version_files import SAVED_MODEL_FILES, TFLITE_MODEL_FILE, has_model
from servingd.servables.codecs import proto_enum_from_dtype
from servingd.servables.delegates import delegate_library
from servingd.servables.platforms import TFLITE_PLATFORM
from servingd.servables.protos import meta_graph_pb2, types_pb2
from servingd.servables.servable import RunsOnWorkers
from servingd.servables.signature_constants import (
    DEFAULT_SERVING_SIGNATURE_DEF_KEY,
    PREDICT_METHOD_NAME,
)
from servingd.servables.signatures import Signature, SignatureLookup
from servingd.servables.tflite_flatbuffer import serialized_signature_defs
from servingd.servables.version_dir import VersionDirLoader
from servingd.servables.warmup import WarmupOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TfLiteOptions:
    """How one TF Lite version runs.

    interpreters: how many calls run at once (one interpreter each); threads: LiteRT's
    threads per interpreter (None: LiteRT's default); delegate: ``edgetpu`` or a delegate
    library's path (servables.delegates); xnnpack False runs LiteRT's reference kernels.
    """

    interpreters: int = 1
    threads: int | None = None
    delegate: str | None = None
    xnnpack: bool = True

    def __post_init__(self) -> None:
        if self.interpreters < 1:
            raise errors.InvalidArgument(f"interpreters must be >= 1, got {self.interpreters}")
        if self.threads is not None and self.threads < 1:
            raise errors.InvalidArgument(f"threads must be >= 1, got {self.threads}")


def loads_as_tflite(path: str, *, platform: str, prefer_tflite: bool) -> bool:
    """Whether a version directory is served by LiteRT: its model's platform is tflite,
    or it holds model.tflite and either no SavedModel or --prefer_tflite_model is set."""
    if platform == TFLITE_PLATFORM:
        return True
    if not has_model(path, (TFLITE_MODEL_FILE,)):
        return False
    return prefer_tflite or not has_model(path, SAVED_MODEL_FILES)


class _Interpreter:
    """One LiteRT interpreter and the input shapes it is allocated for; one caller at a time."""

    def __init__(self, interpreter: Interpreter) -> None:
        self.interpreter = interpreter
        self._shapes = {
            int(d["index"]): tuple(int(n) for n in d["shape"])
            for d in interpreter.get_input_details()
        }

    def run(self, feeds: Sequence[tuple[int, np.ndarray]], fetches: Sequence[int]) -> list[Any]:
        wanted = {index: tuple(value.shape) for index, value in feeds}
        if any(self._shapes.get(index) != shape for index, shape in wanted.items()):
            self._resize(wanted)
        it = self.interpreter
        try:
            for index, value in feeds:
                it.set_tensor(index, value)
        except ValueError as exc:
            raise errors.InvalidArgument(f"Cannot set input tensor: {exc}") from None
        try:
            it.invoke()
        except RuntimeError as exc:
            raise errors.Internal(f"Failed to invoke TfLite interpreter: {exc}") from None
        return [it.get_tensor(index) for index in fetches]

    def _resize(self, wanted: Mapping[int, tuple[int, ...]]) -> None:
        it = self.interpreter
        previous = dict(self._shapes)
        try:
            for index, shape in wanted.items():
                it.resize_tensor_input(index, list(shape), strict=False)
            it.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            for index, shape in previous.items():  # back to shapes that allocated before
                it.resize_tensor_input(index, list(shape), strict=False)
            it.allocate_tensors()
            shapes = ", ".join(f"{list(s)}" for s in wanted.values())
            raise errors.InvalidArgument(
                f"Failed to resize the model's inputs to {shapes}: {exc}"
            ) from None
        self._shapes.update(wanted)


class InterpreterPool:
    """A fixed set of interpreters; a run leases one (the most recently used first: its
    buffers are the ones in cache)."""

    def __init__(self, interpreters: Sequence[_Interpreter]) -> None:
        self._idle: queue.LifoQueue[_Interpreter] = queue.LifoQueue()
        for interpreter in interpreters:
            self._idle.put(interpreter)
        self.size = len(interpreters)
        self._closed = threading.Event()

    @contextlib.contextmanager
    def lease(self, servable_id: ServableId, timeout_s: float | None) -> Iterator[_Interpreter]:
        if self._closed.is_set():
            raise errors.Unavailable(f"Servable {servable_id} has been unloaded")
        try:
            interpreter = self._idle.get(timeout=timeout_s)
        except queue.Empty:
            raise errors.DeadlineExceeded(
                f"no interpreter of {servable_id} became free within {timeout_s:.3f} s"
            ) from None
        try:
            yield interpreter
        finally:
            self._idle.put(interpreter)

    def close(self) -> None:
        self._closed.set()


class TfLiteServable(RunsOnWorkers, SignatureLookup):
    """One loaded TF Lite version: its signatures and a thread-safe ``run``
    (servables.servable.Servable)."""

    def __init__(
        self,
        id: ServableId,
        path: str,
        meta_graph_def: Any,
        pool: InterpreterPool,
        tensors: Mapping[str, int],
        fixed_batch: FixedBatch | None = None,
    ) -> None:
        super().__init__(meta_graph_def)
        self.id = id
        self.path = path
        self.pool = pool
        self._tensors = dict(tensors)  # input and output tensor names -> index
        self.fixed_batch = fixed_batch

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

        ``timeout_s`` bounds the wait for a free interpreter; a started run is not
        interrupted. LiteRT always runs in the calling thread (``in_caller_thread``, the
        contract's hint, changes nothing).
        """
        tensors = signature.tensor_run(inputs, output_filter, strict_shapes=strict_shapes)
        named = dict(zip(tensors.feed_names, tensors.feeds, strict=True))
        results = self.run_tensors(named, tensors.fetch_names, timeout_s=timeout_s)
        return dict(zip(tensors.aliases, results, strict=True))

    def run_tensors(
        self,
        feeds: Mapping[str, np.ndarray],
        fetch_names: Sequence[str],
        *,
        timeout_s: float | None = None,
    ) -> list[np.ndarray]:
        """Feed tensors by name and fetch others (TF Serving's Session::Run on a TF Lite
        model: a name unknown as such is retried without its ``:N`` suffix)."""
        # Strings stay object arrays of bytes: LiteRT takes them as they are (numpy's
        # fixed-width bytes would drop a serialized proto's trailing NUL bytes).
        inputs = [(self._index(name, "input"), value) for name, value in feeds.items()]
        fetches = [self._index(name, "output") for name in fetch_names]
        rows = self.fixed_batch.rows_to_split(inputs) if self.fixed_batch else None
        with self.pool.lease(self.id, timeout_s) as interpreter:
            if rows is None:
                return interpreter.run(inputs, fetches)
            assert self.fixed_batch is not None
            return self.fixed_batch.run_split(interpreter, inputs, fetches, rows)

    def _index(self, name: str, kind: str) -> int:
        index = self._tensors.get(name)
        if index is None:
            index = self._tensors.get(name.partition(":")[0])
        if index is None:
            raise errors.InvalidArgument(f"Missing {kind} TFLite tensor: {name}")
        return index

    def close(self) -> None:
        self.pool.close()


@dataclass(frozen=True, slots=True)
class FixedBatch:
    """A model whose inputs all have the same fixed first dimension (``size``, > 0, in their
    shape signature; ``ranks``: each input's rank). Fed more or fewer rows than that, in
    inputs of the model's rank, it runs in slices of ``size`` rows (the last one padded
    with copies of its last row) and the outputs' slices are joined: a model whose
    operators bake the batch size in (an Edge TPU model always does) cannot be resized."""

    size: int
    ranks: Mapping[int, int]

    @classmethod
    def of(cls, input_details: Sequence[Mapping[str, Any]]) -> FixedBatch | None:
        firsts = {int(d["shape_signature"][0]) if len(d["shape_signature"]) else -1
                  for d in input_details}  # fmt: skip
        if len(firsts) != 1 or min(firsts) < 1:
            return None
        ranks = {int(d["index"]): len(d["shape_signature"]) for d in input_details}
        return cls(firsts.pop(), ranks)

    def rows_to_split(self, feeds: Sequence[tuple[int, np.ndarray]]) -> int | None:
        """The rows of a request to run in slices; None when it is fed as it is."""
        if not feeds or any(value.ndim != self.ranks.get(i) for i, value in feeds):
            return None
        rows = {int(value.shape[0]) for _, value in feeds}
        if len(rows) != 1 or rows == {self.size} or rows == {0}:
            return None
        return rows.pop()

    def run_split(
        self,
        interpreter: _Interpreter,
        feeds: Sequence[tuple[int, np.ndarray]],
        fetches: Sequence[int],
        rows: int,
    ) -> list[np.ndarray]:
        parts: list[list[np.ndarray]] = [[] for _ in fetches]
        for start in range(0, rows, self.size):
            chunk = []
            for index, value in feeds:
                piece = value[start : start + self.size]
                if len(piece) < self.size:
                    piece = np.concatenate(
                        [piece, np.repeat(piece[-1:], self.size - len(piece), 0)]
                    )
                chunk.append((index, piece))
            for part, output in zip(parts, interpreter.run(chunk, fetches), strict=True):
                if output.ndim == 0 or output.shape[0] != self.size:
                    raise errors.InvalidArgument(
                        f"the model's batch size is fixed at {self.size} and an output of shape "
                        f"{list(output.shape)} cannot be joined: send {self.size} row(s)"
                    )
                part.append(output)
        return [np.concatenate(part)[:rows] for part in parts]


def _legacy_name(name: str) -> str:
    return name.partition(":")[0]


def _tensor_info(info: Any, detail: Mapping[str, Any]) -> None:
    dtype = np.dtype(detail["dtype"])
    info.name = str(detail["name"])
    info.dtype = types_pb2.DT_STRING if dtype.kind in "SO" else proto_enum_from_dtype(dtype)
    for size in detail["shape_signature"]:
        info.tensor_shape.dim.add().size = int(size)


Details = Mapping[str, Mapping[str, Any]]  # alias -> LiteRT tensor details


def native_signature(interpreter: Interpreter) -> tuple[str, Details, Details] | None:
    """The model's own signature (key, inputs, outputs by alias) when it has exactly one
    and that one feeds and fetches the model's own inputs and outputs; else None."""
    keys = list(interpreter.get_signature_list())
    if len(keys) != 1:
        return None
    runner = interpreter.get_signature_runner(keys[0])
    inputs, outputs = runner.get_input_details(), runner.get_output_details()

    def indices(details: Iterable[Mapping[str, Any]]) -> set[int]:
        return {int(d["index"]) for d in details}

    if indices(inputs.values()) != indices(interpreter.get_input_details()) or indices(
        outputs.values()
    ) != indices(interpreter.get_output_details()):
        return None
    return keys[0], inputs, outputs


def build_signature_defs(
    serialized: Mapping[str, bytes],
    native: tuple[str, Details, Details] | None,
    input_details: Sequence[Mapping[str, Any]],
    output_details: Sequence[Mapping[str, Any]],
) -> Any:
    """A MetaGraphDef holding the model's signatures (see the module doc for the sources)."""
    meta_graph_def = meta_graph_pb2.MetaGraphDef()
    inputs = {str(d["name"]) for d in input_details}
    outputs = {str(d["name"]) for d in output_details}
    if not serialized:
        if native is not None:
            key, by_alias_in, by_alias_out = native
        else:
            log.warning("No signature def found in TFLite model. Generating one.")
            key = DEFAULT_SERVING_SIGNATURE_DEF_KEY
            by_alias_in = {_legacy_name(str(d["name"])): d for d in input_details}
            by_alias_out = {_legacy_name(str(d["name"])): d for d in output_details}
        sig = meta_graph_def.signature_def[key]
        for alias, detail in by_alias_in.items():
            _tensor_info(sig.inputs[alias], detail)
        for alias, detail in by_alias_out.items():
            _tensor_info(sig.outputs[alias], detail)
        sig.method_name = PREDICT_METHOD_NAME
        return meta_graph_def
    for key, data in sorted(serialized.items()):
        sig = meta_graph_def.signature_def[key]
        try:
            sig.ParseFromString(data)
        except DecodeError:
            raise errors.InvalidArgument(
                f"Invalid SignatureDefs found in TfLite model: {key} is not a SignatureDef"
            ) from None
        for kind, infos, known in (("input", sig.inputs, inputs), ("output", sig.outputs, outputs)):
            for alias, info in infos.items():
                if info.name not in known and _legacy_name(info.name) in known:
                    info.name = _legacy_name(info.name)
                if info.name not in known:
                    raise errors.InvalidArgument(
                        f"Signature {kind} {alias} references an unknown tensor: "
                        f"Unknown tensor '{info.name}'."
                    )
    return meta_graph_def


class TfLiteLoader(VersionDirLoader[TfLiteServable]):
    """Loader (servingd.core.loader) for one version directory's ``model.tflite``."""

    def __init__(
        self,
        id: ServableId,
        path: str,
        options: TfLiteOptions | None = None,
        warmup: WarmupOptions | None = None,
    ) -> None:
        super().__init__(id, path, warmup)
        self.options = options or TfLiteOptions()

    def load(self) -> None:
        self._check_not_loaded()
        model_path = os.path.join(self.path, TFLITE_MODEL_FILE)
        try:
            with open(model_path, "rb") as f:
                model = f.read()
        except OSError as exc:
            raise self._os_error(exc) from None
        try:
            serialized = serialized_signature_defs(model)
            interpreters = [self._interpreter(model) for _ in range(self.options.interpreters)]
            first = interpreters[0].interpreter
            details = first.get_input_details(), first.get_output_details()
            native = native_signature(first)
            meta_graph_def = build_signature_defs(serialized, native, *details)
            tensors = {str(d["name"]): int(d["index"]) for d in (*details[0], *details[1])}
            servable = TfLiteServable(
                self.id,
                self.path,
                meta_graph_def,
                InterpreterPool(interpreters),
                tensors,
                FixedBatch.of(details[0]),
            )
            self._warm_up(servable)
        except errors.ServingError as exc:
            raise self._fail(type(exc), exc.message) from None
        self._servable = servable
        log.info(
            "Loaded TF Lite servable %s from %s (%d interpreter(s); signatures: %s)",
            self.id,
            model_path,
            self.options.interpreters,
            ", ".join(sorted(servable.signature_def_map())),
            extra=model_fields(self.id),
        )

    def _interpreter(self, model: bytes) -> _Interpreter:
        delegates = []
        if self.options.delegate is not None:
            library = delegate_library(self.options.delegate)
            try:
                delegates.append(load_delegate(library))
            except (OSError, ValueError) as exc:
                raise errors.FailedPrecondition(
                    f"cannot load the TF Lite delegate {self.options.delegate} ({library}): {exc}"
                ) from None
        resolver = (
            OpResolverType.AUTO
            if self.options.xnnpack
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        try:
            interpreter = Interpreter(
                model_content=model,
                num_threads=self.options.threads,
                experimental_delegates=delegates or None,
                experimental_op_resolver_type=resolver,
            )
            interpreter.allocate_tensors()
        except ValueError as exc:
            raise errors.DataLoss(f"cannot read the TF Lite model: {exc}") from None
        except RuntimeError as exc:
            if "unresolved custom op" in str(exc):
                raise errors.Unimplemented(
                    "the model uses an operator that LiteRT's Python runtime does not "
                    f"provide: {str(exc).splitlines()[0]}"
                ) from None
            raise errors.Internal(f"Cannot build Interpreter from buffer: {exc}") from None
        return _Interpreter(interpreter)
