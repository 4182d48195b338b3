"""`/etc/servingd/servingd.yaml`: the schema, read into ServerSettings fields.

Every key is listed in `ENTRIES` (a YAML path, the ServerSettings field it sets and the
command-line flag that overrides it) or handled by name in `read_servingd_yaml`; any
other key is refused with its file:line. The packaged etc/servingd.yaml documents each.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servingd.batching.parameters import BatchingParameters
from servingd.config.admin_token import load_admin_token
from servingd.config.model_files import batching_from_node
from servingd.config.monitoring_config import load_prometheus_path
from servingd.config.ssl_config import TlsSettings, load_ssl_config
from servingd.config.yaml_nodes import Node
from servingd.core.thread_priority import MAX_NICE
from servingd.sources.s3.options import S3Credentials, load_s3_credentials

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_TARGETS = ("auto", "journald", "stderr")


@dataclass(frozen=True)
class Entry:
    """One scalar key: YAML path -> ServerSettings field, overridden by `flag` when given."""

    path: tuple[str, ...]
    setting: str
    flag: str
    read: Callable[[Node, str], Any]


def _port(node: Node, what: str) -> int:
    port = node.int_(what, minimum=0)
    if port > 65535:
        raise node.error(f"{what} must be <= 65535, got {port}")
    return port


def _str(node: Node, what: str) -> str:
    return node.optional_str(what)


def _level(node: Node, what: str) -> str:
    return node.choice(what, LOG_LEVELS)


def _target(node: Node, what: str) -> str:
    return node.choice(what, LOG_TARGETS)


def _seconds(node: Node, what: str) -> float:
    return node.float_(what, minimum=0)


def _millis(node: Node, what: str) -> float:
    return node.float_(what, minimum=0)


def _poll_seconds(node: Node, what: str) -> float:
    return node.float_(what)  # negative: never poll (TF Serving's meaning)


def _count(node: Node, what: str) -> int:
    return node.int_(what, minimum=0)


def _positive(node: Node, what: str) -> int:
    return node.int_(what, minimum=1)


def _nice(node: Node, what: str) -> int:
    value = node.int_(what, minimum=0)
    if value > MAX_NICE:
        raise node.error(f"{what} must be between 0 and {MAX_NICE}, got {value}")
    return value


def _bool(node: Node, what: str) -> bool:
    return node.bool_(what)


def _fraction(node: Node, what: str) -> float:
    value = node.float_(what, minimum=0)
    if value > 1:
        raise node.error(f"{what} must be between 0 and 1, got {value}")
    return value


def _tags(node: Node, what: str) -> frozenset[str]:
    return frozenset(item.str_(what) for item in node.sequence(what))


def _byte_limit(unlimited: int) -> Callable[[Node, str], int]:
    """A size limit in bytes; 0 means no limit (as the flags: the largest value allowed)."""

    def read(node: Node, what: str) -> int:
        return node.int_(what, minimum=0) or unlimited

    return read


def _file_path(node: Node, what: str) -> str:
    """A file named by the key: "" for null; relative to servingd.yaml's directory."""
    path = node.optional_str(what)
    if path:
        path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(node.path)), path))
    return path


def _tls(node: Node, what: str) -> TlsSettings | None:
    path = _file_path(node, what)
    return load_ssl_config(path) if path else None


def _prometheus(node: Node, what: str) -> str | None:
    path = _file_path(node, what)
    return load_prometheus_path(path) if path else None


def _admin_token(node: Node, what: str) -> str | None:
    path = _file_path(node, what)
    return load_admin_token(path) if path else None


def _s3_credentials(node: Node, what: str) -> S3Credentials | None:
    path = _file_path(node, what)
    return load_s3_credentials(path) if path else None


def _positive_seconds(node: Node, what: str) -> float:
    value = node.float_(what, minimum=0)
    if value <= 0:
        raise node.error(f"{what} must be more than 0, got {value}")
    return value


def _channel_arguments(node: Node, what: str) -> tuple[tuple[str, int | str], ...]:
    result: list[tuple[str, int | str]] = []
    for key, value in node.mapping(what).items():
        item = value.value()
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise value.error(f"{what}.{key} must be an integer or a string, got {item!r}")
        result.append((key, item))
    return tuple(result)


ENTRIES: tuple[Entry, ...] = (
    Entry(("grpc", "port"), "grpc_port", "port", _port),
    Entry(("grpc", "bind_address"), "grpc_bind_address", "grpc_bind_address", _str),
    Entry(("grpc", "socket_path"), "grpc_socket_path", "grpc_socket_path", _str),
    Entry(
        ("grpc", "channel_arguments"),
        "grpc_channel_arguments",
        "grpc_channel_arguments",
        _channel_arguments,
    ),
    Entry(("grpc", "ssl_config_file"), "grpc_tls", "ssl_config_file", _tls),
    Entry(
        ("grpc", "max_receive_message_bytes"),
        "grpc_max_receive_bytes",
        "grpc_max_receive_message_bytes",
        _byte_limit(2**31 - 1),
    ),
    Entry(("rest", "port"), "rest_port", "rest_api_port", _port),
    Entry(("rest", "bind_address"), "rest_bind_address", "rest_api_bind_address", _str),
    Entry(("rest", "timeout_ms"), "rest_timeout_ms", "rest_api_timeout_in_ms", _count),
    Entry(("rest", "enable_cors"), "rest_enable_cors", "rest_api_enable_cors_support", _bool),
    Entry(("rest", "ssl_config_file"), "rest_tls", "rest_api_ssl_config_file", _tls),
    Entry(
        ("rest", "max_body_bytes"),
        "rest_max_body_bytes",
        "rest_api_max_body_bytes",
        _byte_limit(2**62),
    ),
    Entry(("limits", "max_in_flight_requests"), "max_in_flight", "max_in_flight_requests", _count),
    Entry(
        ("limits", "max_in_flight_requests_per_model"),
        "max_in_flight_per_model",
        "max_in_flight_requests_per_model",
        _count,
    ),
    Entry(("limits", "max_tensor_elements"), "max_tensor_elements", "max_tensor_elements", _count),
    Entry(("admin_token_file",), "admin_token", "admin_token_file", _admin_token),
    Entry(("monitoring_config_file",), "prometheus_path", "monitoring_config_file", _prometheus),
    Entry(("logging", "level"), "log_level", "log_level", _level),
    Entry(("logging", "target"), "log_target", "log_target", _target),
    Entry(
        ("model_config_file_poll_wait_seconds",),
        "model_config_file_poll_wait_s",
        "model_config_file_poll_wait_seconds",
        _seconds,
    ),
    Entry(
        ("file_system_poll_wait_seconds",),
        "file_system_poll_wait_s",
        "file_system_poll_wait_seconds",
        _poll_seconds,
    ),
    Entry(("version_settle_seconds",), "version_settle_s", "version_settle_seconds", _seconds),
    Entry(("drain_grace_seconds",), "drain_grace_s", "drain_grace_seconds", _seconds),
    Entry(("compute_thread_nice",), "compute_thread_nice", "compute_thread_nice", _nice),
    Entry(
        ("enable_per_model_batching_parameters",),
        "per_model_batching_parameters",
        "enable_per_model_batching_parameters",
        _bool,
    ),
    Entry(
        ("allow_version_labels_for_unavailable_models",),
        "allow_version_labels_for_unavailable_models",
        "allow_version_labels_for_unavailable_models",
        _bool,
    ),
    Entry(("loading", "num_load_threads"), "num_load_threads", "num_load_threads", _count),
    Entry(("loading", "num_unload_threads"), "num_unload_threads", "num_unload_threads", _count),
    Entry(
        ("loading", "max_num_load_retries"),
        "max_num_load_retries",
        "max_num_load_retries",
        _count,
    ),
    Entry(
        ("loading", "load_retry_interval_seconds"),
        "load_retry_interval_s",
        "load_retry_interval_micros",
        _seconds,  # seconds here; the flag is in microseconds
    ),
    Entry(
        ("loading", "fall_back_to_loadable_version"),
        "fall_back_to_loadable_version",
        "fall_back_to_loadable_version",
        _bool,
    ),
    Entry(
        ("tensorflow", "intra_op_parallelism"),
        "intra_op_parallelism",
        "tensorflow_intra_op_parallelism",
        _count,
    ),
    Entry(
        ("tensorflow", "inter_op_parallelism"),
        "inter_op_parallelism",
        "tensorflow_inter_op_parallelism",
        _count,
    ),
    Entry(
        ("tensorflow", "per_process_gpu_memory_fraction"),
        "per_process_gpu_memory_fraction",
        "per_process_gpu_memory_fraction",
        _fraction,
    ),
    Entry(("tensorflow", "saved_model_tags"), "saved_model_tags", "saved_model_tags", _tags),
    Entry(
        ("tensorflow", "gpu_memory_allow_growth"),
        "gpu_allow_growth",
        "gpu_memory_allow_growth",
        _bool,
    ),
    Entry(("tflite", "prefer_tflite_model"), "prefer_tflite_model", "prefer_tflite_model", _bool),
    Entry(("tflite", "num_pools"), "num_tflite_pools", "num_tflite_pools", _positive),
    Entry(
        ("tflite", "num_interpreters_per_pool"),
        "num_tflite_interpreters_per_pool",
        "num_tflite_interpreters_per_pool",
        _positive,
    ),
    Entry(("warmup", "enabled"), "enable_model_warmup", "enable_model_warmup", _bool),
    Entry(
        ("warmup", "num_request_iterations"),
        "num_request_iterations_for_warmup",
        "num_request_iterations_for_warmup",
        _count,
    ),
    # s3:// base paths: no flags (TF Serving's S3 environment variables fill the gaps).
    Entry(("s3", "endpoint"), "s3_endpoint", "", _str),
    Entry(("s3", "region"), "s3_region", "", _str),
    Entry(("s3", "path_style"), "s3_path_style", "", _bool),
    Entry(("s3", "ca_bundle"), "s3_ca_bundle", "", _file_path),
    Entry(("s3", "poll_interval_seconds"), "s3_poll_interval_s", "", _positive_seconds),
    Entry(("s3", "settle_seconds"), "s3_settle_s", "", _seconds),
    Entry(("s3", "cache_dir"), "s3_cache_dir", "", _file_path),
    Entry(("s3", "credentials_file"), "s3_credentials", "", _s3_credentials),
)
SECTIONS = ("grpc", "rest", "limits", "logging", "loading", "tensorflow", "tflite", "warmup", "s3")
# Keys read by name below (paths, batching, the default device).
PATH_KEYS = ("models_dir", "model_root", "model_config_file", "pid_file")
OTHER_KEYS = ("enable_batching", "batching", "device", "bind_address")
# Keys of earlier releases, still accepted (an upgrade may keep an edited servingd.yaml)
# but ignored, with a warning saying why.
OBSOLETE_KEYS = {
    "inline_run_max_ms": "model runs never happen on the event-loop thread any more",
}
# The top-level bind_address: both listeners' address unless their section names one.
BIND_ADDRESS_SETTINGS = (
    ("grpc_bind_address", "grpc_bind_address"),
    ("rest_bind_address", "rest_api_bind_address"),
)
DEFAULT_MODEL_ROOT = "/var/lib/servingd/models"


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
    top = root.mapping(
        "servingd.yaml", (*SECTIONS, *top_level, *PATH_KEYS, *OTHER_KEYS, *OBSOLETE_KEYS)
    )
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
    base_dir = os.path.dirname(os.path.abspath(root.path))
    for key in PATH_KEYS:
        if key in top:
            path = top[key].optional_str(key)
            if path:
                path = os.path.normpath(os.path.join(base_dir, path))
            result.settings[key] = YamlValue(path, key if key != "model_root" else "", top[key])
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
