"""BatchingParameters: TF Serving's batching knobs, same names, meaning and defaults.

The text-proto form (`--batching_parameters_file`) is TF Serving's BatchingParameters
message (tensorflow_serving/servables/tensorflow/session_bundle_config.proto); servingd's
YAML takes the same keys per model (`batching_parameters_from_mapping`).

Defaults are those of TF Serving when a field is left out of the file: the
BasicBatchScheduler options (max_batch_size 1000, batch_timeout_micros 0,
max_enqueued_batches 10, num_batch_threads = the number of CPUs, thread_pool_name
"batch_threads"), and, with enable_large_batch_splitting, max_execution_batch_size =
max_batch_size (batching_util's rule when the field is unset).

Validation follows TF Serving's (batching_session.cc and the batch ops): every size >= 1,
allowed_batch_sizes strictly increasing, and its last entry equal to max_batch_size
(or to max_execution_batch_size when large batch splitting is on).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from servingd.core.config_error import ConfigError

DEFAULT_THREAD_POOL_NAME = "batch_threads"


class BatchingKeyError(ConfigError):
    """A refused batching key or value; `key` names it, so that a reader of a file with
    lines (servingd.yaml, drop-ins) can place the error at that key's line."""

    def __init__(self, origin: str, key: str, message: str) -> None:
        super().__init__(origin, None, message)
        self.key = key


def _default_num_batch_threads() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchingParameters:
    """One model's batching settings (or the server-wide default). Immutable; validated."""

    # The largest task a request may bring, and (without splitting) the largest batch.
    max_batch_size: int = 1000
    # How long the oldest task of an open batch may wait before the batch is closed.
    batch_timeout_micros: int = 0
    # Batches (not tasks) a queue may hold; beyond that a request is refused UNAVAILABLE.
    max_enqueued_batches: int = 10
    # Threads of the one shared scheduler that run batches (the pool is process-wide: it
    # gets the largest value asked for by any model).
    num_batch_threads: int = field(default_factory=_default_num_batch_threads)
    # Label of the queuing_latency metric, as in TF Serving.
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME
    # When set, a batch is padded up to the next allowed size; the last must equal
    # max_batch_size (or max_execution_batch_size with large batch splitting).
    allowed_batch_sizes: tuple[int, ...] = ()
    # Pad inputs whose non-batch dims differ up to the largest in the batch.
    pad_variable_length_inputs: bool = False
    # Split a request larger than what one batch can run into several batches.
    enable_large_batch_splitting: bool = False
    # With splitting: the largest batch actually run (None: max_batch_size). Ignored
    # without splitting, as in TF Serving.
    max_execution_batch_size: int | None = None

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise ValueError(problem)

    @property
    def execution_batch_size(self) -> int:
        """The most rows one batch runs with (before padding to an allowed size)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    @property
    def max_task_size(self) -> int:
        """The most rows one request may bring (TF's input_batch_size_limit)."""
        return self.max_batch_size

    def problem(self) -> str | None:
        """Why these parameters are invalid (TF Serving's rules), or None."""
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                return f"{name} must be an integer >= 1, got {value!r}"
        if isinstance(self.batch_timeout_micros, bool) or self.batch_timeout_micros < 0:
            return f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros!r}"
        mebs = self.max_execution_batch_size
        if mebs is not None and mebs < 1:
            return f"max_execution_batch_size must be >= 1, got {mebs}"
        sizes = self.allowed_batch_sizes
        for i, size in enumerate(sizes):
            if size < 1:
                return f"allowed_batch_sizes entries must be >= 1, got {size}"
            if i > 0 and size <= sizes[i - 1]:
                return "allowed_batch_sizes entries must be monotonically increasing"
        if sizes and sizes[-1] != self.execution_batch_size:
            which = (
                "max_execution_batch_size"
                if self.enable_large_batch_splitting and mebs is not None
                else "max_batch_size"
            )
            return (
                f"Last entry in allowed_batch_sizes must match {which}; last entry was "
                f"{sizes[-1]}; expected {self.execution_batch_size}"
            )
        return None

    def pad_to_allowed(self, size: int) -> int:
        """The smallest allowed batch size >= size (size itself when none is set)."""
        for allowed in self.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(BatchingParameters))

_INT_FIELDS = {
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
    "max_execution_batch_size",
}
_BOOL_FIELDS = {"pad_variable_length_inputs", "enable_large_batch_splitting"}


def batching_parameters_from_mapping(
    mapping: Mapping[str, Any], origin: str, base: BatchingParameters | None = None
) -> BatchingParameters:
    """A YAML/JSON mapping with BatchingParameters' field names -> BatchingParameters.

    Keys left out take `base`'s values (TF Serving's defaults when base is None). Unknown
    keys, wrong types and values TF Serving refuses raise ConfigError naming `origin` and
    the key.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(origin, None, f"batching must be a mapping, got {type(mapping).__name__}")
    values: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in FIELD_NAMES:
            raise BatchingKeyError(
                origin, key, f"batching: unknown key {key!r}; known keys: {', '.join(FIELD_NAMES)}"
            )
        values[key] = _coerce(key, value, origin)
    try:
        return replace(base or BatchingParameters(), **values)
    except ValueError as exc:
        raise ConfigError(origin, None, f"batching: {exc}") from None


def _coerce(key: str, value: Any, origin: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return BatchingKeyError(origin, key, f"batching.{key}: expected {expected}, got {value!r}")

    if key in _INT_FIELDS:
        if key == "max_execution_batch_size" and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if key in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if key == "allowed_batch_sizes":
        if not isinstance(value, list | tuple) or any(
            isinstance(v, bool) or not isinstance(v, int) for v in value
        ):
            raise bad("a list of integers")
        return tuple(value)
    if not isinstance(value, str):
        raise bad("a string")
    return value


def batching_parameters_from_proto(proto: Any, origin: str) -> BatchingParameters:
    """A BatchingParameters message (TF Serving's) -> BatchingParameters; unset = default."""
    values: dict[str, Any] = {}
    for name in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
        "max_execution_batch_size",
    ):
        if proto.HasField(name):
            values[name] = int(getattr(proto, name).value)
    if proto.HasField("thread_pool_name"):
        values["thread_pool_name"] = str(proto.thread_pool_name.value)
    if proto.HasField("enable_large_batch_splitting"):
        values["enable_large_batch_splitting"] = bool(proto.enable_large_batch_splitting.value)
    values["allowed_batch_sizes"] = tuple(int(v) for v in proto.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = bool(proto.pad_variable_length_inputs)
    try:
        return BatchingParameters(**values)
    except ValueError as exc:
        raise ConfigError(origin, None, f"invalid BatchingParameters: {exc}") from None
