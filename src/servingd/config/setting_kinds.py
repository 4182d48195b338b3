"""How a setting's value is written: on the command line, in servingd.yaml, and its range.

A `Kind` is a value type of the settings schema (`config/schema.py`): the argparse type of
its flag, how a flag's text becomes the setting's value (and its default the flag's
default), and how servingd.yaml's node is read, with file:line on error. A `Range` is the
check both readers apply, each with the messages it has always given.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servingd.config.yaml_nodes import Node

Number = int | float


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """`--grpc_channel_arguments` as TF Serving reads it: k=v,k=v; ints become ints."""
    result: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        try:
            result.append((key, int(value)))
        except ValueError:
            result.append((key, value))
    return result


@dataclass(frozen=True)
class Range:
    """Inclusive bounds (None: open). Flags and servingd.yaml word their refusals as they
    always have: TF Serving's style on the command line, file:line in the YAML."""

    minimum: Number | None = None
    maximum: Number | None = None

    def flag_error(self, flag: str, value: Number) -> str | None:
        """What the command line says about `--flag=value`, None when it is in range."""
        low, high = self.minimum, self.maximum
        if (low is None or value >= low) and (high is None or value <= high):
            return None
        if high is not None:
            return f"--{flag} must be within [{low}, {high}], got {value}"
        return f"--{flag} must be 0 or more" if low == 0 else f"--{flag} must be at least {low}"

    def check_yaml(self, node: Node, what: str, value: Number) -> None:
        """The minimum is checked by Node's readers; this adds the maximum."""
        if self.maximum is not None and value > self.maximum:
            raise node.error(
                f"{what} must be between {self.minimum} and {self.maximum}, got {value}"
            )


def _same(value: Any) -> Any:
    return value


YamlReader = Callable[[Node, str, Range | None], Any]


@dataclass(frozen=True)
class Kind:
    """One value type: `flag_type` is argparse's `type`; `from_flag` turns a parsed flag
    into the setting's value, `to_flag` the setting's default into the flag's default (a
    flag in other units, or a file that holds the value)."""

    name: str
    read_yaml: YamlReader
    flag_type: Callable[[str], Any] = str
    from_flag: Callable[[Any], Any] = _same
    to_flag: Callable[[Any], Any] = _same
    boolean: bool = False
    choices: tuple[str, ...] = ()


def _minimum(check: Range | None) -> Number | None:
    return None if check is None else check.minimum


def _read_int(node: Node, what: str, check: Range | None) -> int:
    minimum = _minimum(check)
    value = node.int_(what, minimum=None if minimum is None else int(minimum))
    if check is not None:
        check.check_yaml(node, what, value)
    return value


def _read_float(node: Node, what: str, check: Range | None) -> float:
    value = node.float_(what, minimum=_minimum(check))
    if check is not None:
        check.check_yaml(node, what, value)
    return value


def _read_port(node: Node, what: str, _check: Range | None) -> int:
    port = node.int_(what, minimum=0)
    if port > 65535:  # what a port is, not a choice of servingd's
        raise node.error(f"{what} must be <= 65535, got {port}")
    return port


def _read_positive_float(node: Node, what: str, _check: Range | None) -> float:
    value = node.float_(what, minimum=0)
    if value <= 0:
        raise node.error(f"{what} must be more than 0, got {value}")
    return value


def _read_str(node: Node, what: str, _check: Range | None) -> str:
    return node.optional_str(what)


def _read_bool(node: Node, what: str, _check: Range | None) -> bool:
    return node.bool_(what)


def _read_tags(node: Node, what: str, _check: Range | None) -> frozenset[str]:
    return frozenset(item.str_(what) for item in node.sequence(what))


def _read_channel_arguments(
    node: Node, what: str, _check: Range | None
) -> tuple[tuple[str, int | str], ...]:
    result: list[tuple[str, int | str]] = []
    for key, value in node.mapping(what).items():
        item = value.value()
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise value.error(f"{what}.{key} must be an integer or a string, got {item!r}")
        result.append((key, item))
    return tuple(result)


def _read_path(node: Node, what: str, _check: Range | None) -> str:
    """A file named by the key: "" for null; relative to servingd.yaml's directory."""
    path = node.optional_str(what)
    if path:
        path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(node.path)), path))
    return path


INT = Kind("integer", _read_int, int)
FLOAT = Kind("number", _read_float, float)
STR = Kind("string", _read_str)
BOOL = Kind("boolean", _read_bool, parse_bool, boolean=True)
PORT = Kind("port", _read_port, int)
PATH = Kind("path", _read_path)
# Seconds on the command line as whole numbers (TF Serving's int flags), a number in YAML.
INT_SECONDS = Kind("seconds", _read_float, int, from_flag=float, to_flag=int)
# --load_retry_interval_micros is in microseconds (negative: none); YAML says seconds.
MICROS = Kind(
    "seconds",
    _read_float,
    int,
    from_flag=lambda micros: max(micros, 0) / 1e6,
    to_flag=lambda seconds: int(seconds * 1e6),
)
# S3's poll interval: no flag, and zero would poll without pause.
POSITIVE_SECONDS = Kind("seconds", _read_positive_float, float)
# --saved_model_tags=serve,gpu; a list in YAML.
TAGS = Kind(
    "tags",
    _read_tags,
    from_flag=lambda text: frozenset(t.strip() for t in text.split(",") if t.strip()),
    to_flag=lambda tags: ",".join(sorted(tags)),
)
# --grpc_channel_arguments=k=v,k=v; a mapping in YAML.
CHANNEL_ARGUMENTS = Kind(
    "channel arguments",
    _read_channel_arguments,
    from_flag=lambda text: tuple(parse_channel_arguments(text)),
    to_flag=lambda arguments: ",".join(f"{k}={v}" for k, v in arguments),
)


def _not_read(node: Node, what: str, _check: Range | None) -> Any:
    raise AssertionError(f"{what}: a derived setting has no servingd.yaml key of its own")


# Built from several flags and keys by config/load.py (the models, the batching default).
DERIVED = Kind("derived", _not_read)


def choice(*choices: str, lower_flag: bool = False) -> Kind:
    """One of `choices`; servingd.yaml takes any case, the flag when `lower_flag`."""

    def read(node: Node, what: str, _check: Range | None) -> str:
        return node.choice(what, choices)

    return Kind("choice", read, str.lower if lower_flag else str, choices=choices)


def byte_limit(unlimited: int) -> Kind:
    """A size limit in bytes; 0 means no limit: the largest value the listener allows."""

    def read(node: Node, what: str, check: Range | None) -> int:
        return _read_int(node, what, check) or unlimited

    return Kind("bytes", read, int, from_flag=lambda value: value or unlimited)


def loaded_from(load: Callable[[str], Any]) -> Kind:
    """A value read from the file the flag or key names (None when none is named)."""

    def read(node: Node, what: str, check: Range | None) -> Any:
        path = _read_path(node, what, check)
        return load(path) if path else None

    def from_flag(path: str) -> Any:
        return load(path) if path else None

    def to_flag(value: Any) -> str:
        assert value is None, "a setting read from a file has no default but none"
        return ""

    return Kind("file", read, from_flag=from_flag, to_flag=to_flag)
