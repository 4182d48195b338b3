"""YAML read as a node tree, so every value knows its file:line.

Contract: `load_yaml_file(path)` returns a `Node` (or None for an empty file); every
accessor raises `ConfigError(path, line, message)` naming the line of the offending key
or value. Mappings are read with `Node.mapping(allowed)`, which refuses unknown keys and
duplicates: a typo is an error, never a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from servingd.config.errors import ConfigError


@dataclass(frozen=True)
class Node:
    """One YAML node and the file it came from; `line` is 1-based."""

    node: yaml.Node
    path: str

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.path, self.line, message)

    # -- scalars ------------------------------------------------------------------------
    def value(self, what: str = "value") -> Any:
        """The plain Python value of a scalar (YAML 1.1 safe types), None for `null`."""
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.error(f"{what} must be a single value, got a {_kind(self.node)}")
        constructor = yaml.constructor.SafeConstructor()
        return constructor.construct_object(self.node, deep=True)

    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.value() is None

    def str_(self, what: str) -> str:
        value = self.value(what)
        if not isinstance(value, str) or not value:
            raise self.error(f"{what} must be a non-empty string, got {value!r}")
        return value

    def optional_str(self, what: str) -> str:
        """A string, or "" for null / empty."""
        value = self.value(what)
        if value is None or value == "":
            return ""
        if not isinstance(value, str):
            raise self.error(f"{what} must be a string or null, got {value!r}")
        return value

    def int_(self, what: str, minimum: int | None = None) -> int:
        value = self.value(what)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{what} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"{what} must be >= {minimum}, got {value}")
        return value

    def float_(self, what: str, minimum: float | None = None) -> float:
        value = self.value(what)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{what} must be a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"{what} must be >= {minimum}, got {value}")
        return float(value)

    def bool_(self, what: str) -> bool:
        value = self.value(what)
        if not isinstance(value, bool):
            raise self.error(f"{what} must be true or false, got {value!r}")
        return value

    def choice(self, what: str, choices: Iterable[str]) -> str:
        allowed = tuple(choices)
        value = self.value(what)
        if not isinstance(value, str) or value.lower() not in allowed:
            raise self.error(f"{what} must be one of {', '.join(allowed)}; got {value!r}")
        return value.lower()

    # -- collections --------------------------------------------------------------------
    def is_mapping(self) -> bool:
        return isinstance(self.node, yaml.MappingNode)

    def mapping(self, what: str, allowed: Iterable[str] | None = None) -> dict[str, Node]:
        """Key -> value node. Keys must be strings, unique and (when given) in `allowed`."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"{what} must be a mapping, got {_kind(self.node)}")
        known = None if allowed is None else tuple(allowed)
        result: dict[str, Node] = {}
        for key_node, value_node in self.node.value:
            key = Node(key_node, self.path)
            name = key.value()
            if not isinstance(name, str):
                raise key.error(f"{what}: keys must be strings, got {name!r}")
            if name in result:
                raise key.error(f"{what}: duplicate key {name!r}")
            if known is not None and name not in known:
                raise key.error(
                    f"{what}: unknown key {name!r} (known keys: {', '.join(sorted(known))})"
                )
            result[name] = Node(value_node, self.path)
        return result

    def sequence(self, what: str) -> list[Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"{what} must be a list, got {_kind(self.node)}")
        return [Node(item, self.path) for item in self.node.value]


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return f"value {node.value!r}"


# Collections nested deeper than this are refused: PyYAML's composer recurses per level
# and would fail with "maximum recursion depth exceeded", without a position.
MAX_YAML_DEPTH = 100


def _check_depth(text: str, path: str) -> None:
    """Refuses nesting deeper than MAX_YAML_DEPTH, at the line where it goes too deep (the
    parser's events come from a loop, not a recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                mark = event.start_mark
                raise ConfigError(
                    path,
                    None if mark is None else int(mark.line) + 1,
                    f"invalid YAML: lists and mappings nested more than {MAX_YAML_DEPTH} deep",
                    None if mark is None else int(mark.column) + 1,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_yaml_file(path: str) -> Node | None:
    """Composes one YAML document; None when the file holds no document."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 text: {exc}") from None
    try:
        _check_depth(text, path)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else int(mark.line) + 1
        column = None if mark is None else int(mark.column) + 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(path, line, f"invalid YAML: {problem}", column) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"invalid YAML: {exc}") from None
    return None if node is None else Node(node, path)
