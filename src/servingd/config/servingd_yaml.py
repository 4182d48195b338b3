"""`/etc/servingd/servingd.yaml`, read into ServerSettings fields.

Every key is a setting's `yaml` path in `config/schema.py` (read by its kind, overridden by
its flag when given) or one of the schema's `YAML_KEYS_READ_BY_NAME`, handled by name in
`read_servingd_yaml`; any other key is refused with its file:line. The packaged
etc/servingd.yaml documents each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servingd.batching.parameters import BatchingParameters
from servingd.config.model_files import batching_from_node
from servingd.config.schema import (
    BY_NAME,
    OBSOLETE_YAML_KEYS,
    SETTINGS,
    YAML_KEYS_READ_BY_NAME,
    Setting,
)
from servingd.config.yaml_nodes import Node

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One scalar key: YAML path -> ServerSettings field, overridden by `flag` when given."""

    path: tuple[str, ...]
    setting: str
    flag: str
    read: Callable[[Node, str], Any]


def _entry(setting: Setting) -> Entry:
    def read(node: Node, what: str) -> Any:
        return setting.kind.read_yaml(node, what, setting.check)

    return Entry(setting.yaml, setting.name, setting.flag, read)


ENTRIES: tuple[Entry, ...] = tuple(_entry(s) for s in SETTINGS if s.yaml)
SECTIONS = tuple(dict.fromkeys(e.path[0] for e in ENTRIES if len(e.path) == 2))
OTHER_KEYS = tuple(YAML_KEYS_READ_BY_NAME)
OBSOLETE_KEYS = OBSOLETE_YAML_KEYS
# The top-level bind_address: both listeners' address unless their section names one.
BIND_ADDRESS_SETTINGS = tuple(
    (name, BY_NAME[name].flag) for name in ("grpc_bind_address", "rest_bind_address")
)
DEFAULT_MODEL_ROOT: str = BY_NAME["model_root"].default


@dataclass(frozen=True)
class YamlValue:
    value: Any
    flag: str  # the flag that overrides it ("" when none does)
    node: Node


@dataclass
class ServingdYaml:
    """What servingd.yaml says: ServerSettings field -> value (with its node and flag)."""

    settings: dict[str, YamlValue] = field(default_factory=dict)
    enable_batching: bool | None = None
    batching: BatchingParameters | None = None
    device: str | None = None


def read_servingd_yaml(root: Node | None) -> ServingdYaml:
    """Validates the whole file; paths are made absolute against the file's directory."""
    result = ServingdYaml()
    if root is None:  # an empty (all comments) file: every default applies
        return result
    top_level = {e.path[0] for e in ENTRIES if len(e.path) == 1}
    top = root.mapping("servingd.yaml", (*SECTIONS, *top_level, *OTHER_KEYS, *OBSOLETE_KEYS))
    for key, why in OBSOLETE_KEYS.items():
        if key in top:
            log.warning("%s:%s: %s is obsolete and ignored: %s", root.path, top[key].line, key, why)
    sections: dict[str, dict[str, Node]] = {}
    for section in SECTIONS:
        if section in top and not top[section].is_null():
            keys = [e.path[1] for e in ENTRIES if e.path[0] == section]
            sections[section] = top[section].mapping(section, keys)
    for entry in ENTRIES:
        if len(entry.path) == 1:
            node = top.get(entry.path[0])
        else:
            node = sections.get(entry.path[0], {}).get(entry.path[1])
        if node is None:
            continue
        value = entry.read(node, ".".join(entry.path))
        result.settings[entry.setting] = YamlValue(value, entry.flag, node)
    if "bind_address" in top:
        address = top["bind_address"].str_("bind_address")
        for setting, flag in BIND_ADDRESS_SETTINGS:
            result.settings.setdefault(setting, YamlValue(address, flag, top["bind_address"]))
    if "enable_batching" in top:
        result.enable_batching = top["enable_batching"].bool_("enable_batching")
    if "batching" in top and not top["batching"].is_null():
        result.batching = batching_from_node(top["batching"])
    if "device" in top:
        result.device = top["device"].optional_str("device") or None
    return result
