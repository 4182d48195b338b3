"""Every server setting, declared once.

A `Setting` is one field of `ServerSettings`: its value type (`Kind`), default, command-line
flag (tensorflow_model_server's name where it has one), servingd.yaml path, check, whether
a reload applies it, whether its value is secret, and its help text. From `SETTINGS` come
the flag parser (`config/flags.py`), the YAML reader's keys (`config/servingd_yaml.py`),
`ServerSettings`' defaults (`config/settings.py`) and the restart-only list
(`daemon/model_server.py`); `tests/unit/test_settings_schema.py` checks the docs, the man
page and etc/servingd.yaml against it. `OPTIONS` are the flags that set no one setting
(read by name, or accepted for compatibility).

Adding a setting: a field in `ServerSettings` (its type, `= default_of("name")`) and its
`Setting` here; the docs' lines follow (the test says which).
"""

from __future__ import annotations

import argparse
import enum
import os
from dataclasses import dataclass, field
from typing import Any

from servingd.config.admin_token import load_admin_token
from servingd.config.monitoring_config import load_prometheus_path
from servingd.config.setting_kinds import (
    BOOL,
    CHANNEL_ARGUMENTS,
    DERIVED,
    FLOAT,
    INT,
    INT_SECONDS,
    MICROS,
    PATH,
    PORT,
    POSITIVE_SECONDS,
    STR,
    TAGS,
    Kind,
    Range,
    byte_limit,
    choice,
    loaded_from,
)
from servingd.config.ssl_config import load_ssl_config
from servingd.core.thread_priority import MAX_NICE
from servingd.servables.session_options import RUNTIMES as SAVED_MODEL_RUNTIMES
from servingd.sources.s3.options import load_s3_credentials


class Reload(enum.Enum):
    """What a reload (SIGHUP) does with a changed value."""

    LIVE = "live"  # applied at once
    NEXT_LOAD = "next version load"  # read when a version loads
    RESTART = "restart"  # kept: only a restart applies it (a warning names it)


class _Same:
    def __repr__(self) -> str:
        return "SAME"


SAME = _Same()
# The unlimited values of "0: no limit": what each listener takes as its largest.
GRPC_UNLIMITED_BYTES = 2**31 - 1
REST_UNLIMITED_BYTES = 2**62
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_TARGETS = ("auto", "journald", "stderr")
_CPUS = os.cpu_count() or 1


@dataclass(frozen=True)
class Setting:
    name: str  # the ServerSettings field
    kind: Kind
    default: Any
    help: str
    flag: str = ""  # "" when no flag sets it
    aliases: tuple[str, ...] = ()  # other spellings of the flag
    yaml: tuple[str, ...] = ()  # its servingd.yaml path; () when none
    check: Range | None = None
    # The command line's check where it differs from servingd.yaml's: tensorflow_model_server
    # takes any value for these flags (scripts keep working), servingd.yaml refuses negatives.
    flag_check: Range | _Same | None = SAME
    reload: Reload = Reload.RESTART
    secret: bool = False  # never logged (repr=False in ServerSettings, no value on reload)

    @property
    def command_line_check(self) -> Range | None:
        return self.check if isinstance(self.flag_check, _Same) else self.flag_check

    @property
    def flag_default(self) -> Any:
        return self.kind.to_flag(self.default)


@dataclass(frozen=True)
class Option:
    """A flag that sets no one setting: read by name (`--model_name`, `--enable_batching`,
    ...) or accepted for compatibility and doing nothing here (`not_applicable` says why)."""

    flag: str
    kind: Kind
    default: Any
    help: str = ""
    aliases: tuple[str, ...] = ()
    not_applicable: str = ""


_UNCHECKED = None  # flag_check: tensorflow_model_server's flag takes any value
_LIVE, _NEXT_LOAD = Reload.LIVE, Reload.NEXT_LOAD

SETTINGS: tuple[Setting, ...] = (
    # -- listeners -------------------------------------------------------------------------
    Setting("grpc_port", PORT, 8500, "gRPC port (0 disables it)", "port", yaml=("grpc", "port")),
    Setting(
        "grpc_bind_address",
        STR,
        "0.0.0.0",
        "address for the gRPC port",
        "grpc_bind_address",
        yaml=("grpc", "bind_address"),
    ),
    Setting(
        "grpc_socket_path",
        STR,
        "",
        "also serve gRPC on this UNIX socket",
        "grpc_socket_path",
        yaml=("grpc", "socket_path"),
    ),
    Setting(
        "grpc_channel_arguments",
        CHANNEL_ARGUMENTS,
        (),
        "gRPC channel arguments, key=value,key=value",
        "grpc_channel_arguments",
        yaml=("grpc", "channel_arguments"),
    ),
    Setting(
        "rest_port", PORT, 0, "REST port (0 disables it)", "rest_api_port", yaml=("rest", "port")
    ),
    Setting(
        "rest_bind_address",
        STR,
        "0.0.0.0",
        "address for REST",
        "rest_api_bind_address",
        yaml=("rest", "bind_address"),
    ),
    Setting(
        "rest_timeout_ms",
        INT,
        30000,
        "a REST request's deadline, in milliseconds",
        "rest_api_timeout_in_ms",
        yaml=("rest", "timeout_ms"),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "rest_enable_cors",
        BOOL,
        False,
        "add CORS headers to REST responses",
        "rest_api_enable_cors_support",
        yaml=("rest", "enable_cors"),
    ),
    # -- what to serve -----------------------------------------------------------------------
    Setting(
        "models",
        DERIVED,  # from --model_name/--model_base_path, models.config and models.d
        (),
        "the models: from the flags, model_config_file and models_dir (config/load.py)",
        reload=_LIVE,
    ),
    Setting(
        "model_config_file",
        PATH,
        "",
        "a ModelServerConfig text proto",
        "model_config_file",
        yaml=("model_config_file",),
        reload=_LIVE,
    ),
    Setting(
        "model_config_file_poll_wait_s",
        INT_SECONDS,
        0.0,
        "re-read model_config_file every N seconds (0: only on reload)",
        "model_config_file_poll_wait_seconds",
        yaml=("model_config_file_poll_wait_seconds",),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "file_system_poll_wait_s",
        INT_SECONDS,  # negative: never poll (TF Serving's meaning)
        1.0,
        "how often each model's base path is scanned for versions, in seconds",
        "file_system_poll_wait_seconds",
        yaml=("file_system_poll_wait_seconds",),
    ),
    Setting(
        "version_settle_s",
        FLOAT,
        1.0,
        "a new version dir must be unchanged this long before it is loaded",
        "version_settle_seconds",
        yaml=("version_settle_seconds",),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    # -- loading -----------------------------------------------------------------------------
    Setting(
        "num_load_threads",
        INT,
        0,
        "threads that load versions (0: two)",
        "num_load_threads",
        yaml=("loading", "num_load_threads"),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "num_unload_threads",
        INT,
        0,
        "threads that unload versions (0: one)",
        "num_unload_threads",
        yaml=("loading", "num_unload_threads"),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "max_num_load_retries",
        INT,
        5,
        "how often a failed load is retried",
        "max_num_load_retries",
        yaml=("loading", "max_num_load_retries"),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "load_retry_interval_s",
        MICROS,  # the flag in microseconds, servingd.yaml in seconds
        60.0,
        "the wait before a failed load is retried (the flag in microseconds, servingd.yaml "
        "in seconds)",
        "load_retry_interval_micros",
        yaml=("loading", "load_retry_interval_seconds"),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "fall_back_to_loadable_version",
        BOOL,
        True,
        "under the latest policy, serve the newest version that loads when newer ones fail "
        "(false: TensorFlow Serving's strict behaviour)",
        "fall_back_to_loadable_version",
        yaml=("loading", "fall_back_to_loadable_version"),
    ),
    Setting(
        "allow_version_labels_for_unavailable_models",
        BOOL,
        False,
        "allow new labels to point at versions that are not loaded yet",
        "allow_version_labels_for_unavailable_models",
        yaml=("allow_version_labels_for_unavailable_models",),
        reload=_LIVE,
    ),
    # -- TensorFlow --------------------------------------------------------------------------
    Setting(
        "saved_model_tags",
        TAGS,
        frozenset({"serve"}),
        "the MetaGraph to load, by its tags (comma-separated)",
        "saved_model_tags",
        yaml=("tensorflow", "saved_model_tags"),
    ),
    Setting(
        "saved_model_runtime",  # the eager context's threads are fixed when it starts
        choice(*SAVED_MODEL_RUNTIMES, lower_flag=True),
        "functions",
        "functions: a client's cancel or deadline stops its TensorFlow run; session: TF "
        "Serving's Session runs (a little faster for tiny models; only the deadline stops one)",
        "saved_model_runtime",
        yaml=("tensorflow", "saved_model_runtime"),
    ),
    Setting(
        "intra_op_parallelism",
        INT,  # 0: --tensorflow_session_parallelism, as TF Serving (config/flags.py)
        0,
        "TensorFlow's intra-op threads (0: TensorFlow's choice)",
        "tensorflow_intra_op_parallelism",
        yaml=("tensorflow", "intra_op_parallelism"),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "inter_op_parallelism",
        INT,
        0,
        "TensorFlow's inter-op threads (0: TensorFlow's choice)",
        "tensorflow_inter_op_parallelism",
        yaml=("tensorflow", "inter_op_parallelism"),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "per_process_gpu_memory_fraction",
        FLOAT,
        0.0,
        "the share of each GPU's memory TensorFlow takes (0: TensorFlow's choice)",
        "per_process_gpu_memory_fraction",
        yaml=("tensorflow", "per_process_gpu_memory_fraction"),
        check=Range(0, 1),
    ),
    Setting(
        "gpu_allow_growth",
        BOOL,
        False,
        "let TensorFlow grow GPU memory as needed (GPU only)",
        "gpu_memory_allow_growth",
        yaml=("tensorflow", "gpu_memory_allow_growth"),
    ),
    # -- process -----------------------------------------------------------------------------
    Setting(
        "log_level",
        choice(*LOG_LEVELS, lower_flag=True),
        "info",
        "debug, info, warning or error",
        "log_level",
        yaml=("logging", "level"),
        reload=_LIVE,
    ),
    Setting(
        "drain_grace_s",  # the REST listener's drain timeout is fixed when it starts
        FLOAT,
        30.0,
        "on SIGTERM, how long in-flight requests may take to finish",
        "drain_grace_seconds",
        yaml=("drain_grace_seconds",),
        check=Range(0),
        flag_check=_UNCHECKED,
    ),
    Setting(
        "compute_thread_nice",  # threads keep the nice value they started with
        INT,
        0,
        f"nice value (0-{MAX_NICE}) for the threads that load and run models, below the "
        "event loop's and gRPC's: under full CPU the front end admits requests first (0: off)",
        "compute_thread_nice",
        yaml=("compute_thread_nice",),
        check=Range(0, MAX_NICE),
    ),
    Setting(
        "config_file",
        STR,
        "",
        "servingd.yaml (e.g. /etc/servingd/servingd.yaml)",
        "config",
        reload=_LIVE,  # a reload re-reads the same command line
    ),
    Setting(
        "models_dir",
        PATH,
        "",
        "model drop-ins (*.yaml), e.g. /etc/servingd/models.d",
        "models_dir",
        yaml=("models_dir",),
        reload=_LIVE,
    ),
    Setting(
        "model_root",
        PATH,
        "/var/lib/servingd/models",
        "a relative base_path in a model file is taken under this directory",
        yaml=("model_root",),
        reload=_LIVE,
    ),
    Setting(
        "pid_file",
        PATH,
        "",
        "write the daemon's pid here while it runs",
        "pid_file",
        yaml=("pid_file",),
    ),
    Setting(
        "log_target",
        choice(*LOG_TARGETS),
        "auto",
        "auto: journald when systemd connected stderr to the journal",
        "log_target",
        yaml=("logging", "target"),
    ),
    # -- batching, warmup, metadata ----------------------------------------------------------
    Setting(
        "batching",
        DERIVED,  # --enable_batching + --batching_parameters_file, or enable_batching + batching:
        None,
        "the batching parameters of every model without its own (None: batching off)",
        reload=_LIVE,
    ),
    Setting(
        "per_model_batching_parameters",  # the loaders read batching_params.pbtxt or not
        BOOL,
        False,
        "read batching_params.pbtxt from each SavedModel dir",
        "enable_per_model_batching_parameters",
        yaml=("enable_per_model_batching_parameters",),
    ),
    Setting(
        "enable_model_warmup",
        BOOL,
        True,
        "replay assets.extra/tf_serving_warmup_requests",
        "enable_model_warmup",
        yaml=("warmup", "enabled"),
        reload=_NEXT_LOAD,
    ),
    Setting(
        "num_request_iterations_for_warmup",
        INT,
        1,
        "how often each warmup request is replayed",
        "num_request_iterations_for_warmup",
        yaml=("warmup", "num_request_iterations"),
        check=Range(0),
        flag_check=Range(1),  # servingd.yaml has always taken 0 (no replay)
        reload=_NEXT_LOAD,
    ),
    Setting(
        "prometheus_path",
        loaded_from(load_prometheus_path),
        None,
        "a MonitoringConfig text proto: Prometheus metrics on the REST port",
        "monitoring_config_file",
        yaml=("monitoring_config_file",),
    ),
    Setting(
        "enable_signature_method_name_check",
        BOOL,
        False,
        "Classify/Regress/MultiInference also check the signature's method_name",
        "enable_signature_method_name_check",
    ),
    Setting(
        "grpc_tls",
        loaded_from(load_ssl_config),
        None,
        "TLS for the gRPC port: an SSLConfig text proto",
        "ssl_config_file",
        yaml=("grpc", "ssl_config_file"),
        secret=True,
    ),
    Setting(
        "rest_tls",
        loaded_from(load_ssl_config),
        None,
        "TLS for the REST port: an SSLConfig text proto, as --ssl_config_file",
        "rest_api_ssl_config_file",
        yaml=("rest", "ssl_config_file"),
        secret=True,
    ),
    # -- limits (docs/reliability.md): built once with the listeners; 0 means no cap --------
    Setting(
        "max_in_flight",
        INT,
        1024,
        "inference requests served at once; more are refused at once with "
        "UNAVAILABLE / 503 (0: no cap)",
        "max_in_flight_requests",
        yaml=("limits", "max_in_flight_requests"),
        check=Range(0),
    ),
    Setting(
        "max_in_flight_per_model",
        INT,
        0,
        "the same cap for each model (0: no cap)",
        "max_in_flight_requests_per_model",
        yaml=("limits", "max_in_flight_requests_per_model"),
        check=Range(0),
    ),
    Setting(
        "max_tensor_elements",
        INT,
        64 * 1024 * 1024,  # 256 MiB of float32, as much as the default request size carries
        "tensor elements one request may carry, all inputs together (0: no limit)",
        "max_tensor_elements",
        yaml=("limits", "max_tensor_elements"),
        check=Range(0),
    ),
    Setting(
        "grpc_max_receive_bytes",
        byte_limit(GRPC_UNLIMITED_BYTES),
        256 * 1024 * 1024,
        "largest gRPC request accepted (RESOURCE_EXHAUSTED beyond it)",
        "grpc_max_receive_message_bytes",
        yaml=("grpc", "max_receive_message_bytes"),
        check=Range(0),
    ),
    Setting(
        "rest_max_body_bytes",
        byte_limit(REST_UNLIMITED_BYTES),
        256 * 1024 * 1024,
        "largest REST request body accepted (413 beyond it)",
        "rest_api_max_body_bytes",
        yaml=("rest", "max_body_bytes"),
        check=Range(0),
    ),
    # -- TF Lite -----------------------------------------------------------------------------
    Setting(
        "prefer_tflite_model",
        BOOL,
        False,
        "a version with both saved_model.pb and model.tflite loads the TF Lite model",
        "prefer_tflite_model",
        yaml=("tflite", "prefer_tflite_model"),
        reload=_NEXT_LOAD,
    ),
    Setting(
        "num_tflite_pools",
        INT,
        1,
        "TF Lite: interpreter pools per version (interpreters = pools x per pool)",
        "num_tflite_pools",
        yaml=("tflite", "num_pools"),
        check=Range(1),
        reload=_NEXT_LOAD,
    ),
    Setting(
        "num_tflite_interpreters_per_pool",
        INT,
        1,
        "TF Lite: interpreters per pool",
        "num_tflite_interpreters_per_pool",
        yaml=("tflite", "num_interpreters_per_pool"),
        check=Range(1),
        reload=_NEXT_LOAD,
    ),
    Setting(
        "admin_token",
        loaded_from(load_admin_token),
        None,
        "file holding a bearer token required by state-changing endpoints (reload)",
        "admin_token_file",
        yaml=("admin_token_file",),
        secret=True,
    ),
    # -- s3:// base paths: no flags (TF Serving's S3 variables fill the gaps); the store and
    # its client are built once, on the first s3:// base path ---------------------------------
    Setting("s3_endpoint", STR, "", "the S3 endpoint (default AWS)", yaml=("s3", "endpoint")),
    Setting("s3_region", STR, "", "the S3 region", yaml=("s3", "region")),
    Setting(
        "s3_path_style",
        BOOL,
        None,  # path-style when an endpoint is set
        "the bucket in the path, not the host name",
        yaml=("s3", "path_style"),
    ),
    Setting("s3_ca_bundle", PATH, "", "the CAs of the endpoint", yaml=("s3", "ca_bundle")),
    Setting(
        "s3_poll_interval_s",
        POSITIVE_SECONDS,
        30.0,
        "each model's listing, once per interval",
        yaml=("s3", "poll_interval_seconds"),
    ),
    Setting(
        "s3_settle_s",
        FLOAT,
        10.0,
        "a new version's listing must stay unchanged this long",
        yaml=("s3", "settle_seconds"),
        check=Range(0),
    ),
    Setting(
        "s3_cache_dir",  # "": $CACHE_DIRECTORY/s3, else /var/cache/servingd/s3
        PATH,
        "",
        "where versions are fetched to",
        yaml=("s3", "cache_dir"),
    ),
    Setting(
        "s3_credentials",  # else systemd's $CREDENTIALS_DIRECTORY/s3 (LoadCredential=)
        loaded_from(load_s3_credentials),
        None,
        "an AWS credentials file",
        yaml=("s3", "credentials_file"),
        secret=True,
    ),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

_NA_BOOL = "(not applicable here)"
OPTIONS: tuple[Option, ...] = (
    Option(
        "check_config",
        BOOL,
        False,
        "validate the whole configuration (servingd.yaml, models.d, models.config) "
        "and exit 0 (valid) or 1, without serving",
        # the spelling of the packaging (ExecStartPre=) and nginx -t's habit
        aliases=("check-config",),
    ),
    Option("version", BOOL, False, "print the version and exit"),
    Option("model_name", STR, "default", "the model of --model_base_path"),
    Option("model_base_path", STR, "", "serve one model from this directory"),
    Option("enable_batching", BOOL, False, "batch requests (see --batching_parameters_file)"),
    Option("batching_parameters_file", STR, "", "a BatchingParameters text proto"),
    Option(
        "tensorflow_session_parallelism",
        INT,
        0,
        "both TensorFlow thread pools, unless --tensorflow_*_op_parallelism is given",
    ),
    # Obsolete (model runs never happen on the event-loop thread): accepted, ignored.
    Option("inline_run_max_ms", FLOAT, None, argparse.SUPPRESS),
    Option(
        "rest_api_num_threads",
        INT,
        4 * _CPUS,
        not_applicable="the REST API runs on the event loop",
    ),
    Option(
        "use_alts_credentials",
        BOOL,
        False,
        _NA_BOOL,
        not_applicable="Google ALTS exists only inside Google Cloud",
    ),
    Option(
        "tensorflow_session_config_file",
        STR,
        "",
        not_applicable="set threads with --tensorflow_*_parallelism instead",
    ),
    Option(
        "platform_config_file",
        STR,
        "",
        not_applicable="only the tensorflow platform is served; use model_platform",
    ),
    Option(
        "flush_filesystem_caches",
        BOOL,
        True,
        _NA_BOOL,
        not_applicable="Python's loader keeps no filesystem cache to flush",
    ),
    Option(
        "grpc_max_threads",
        INT,
        4 * _CPUS,
        not_applicable="grpc.aio serves all calls on the event loop",
    ),
    Option(
        "remove_unused_fields_from_bundle_metagraph",
        BOOL,
        True,
        _NA_BOOL,
        not_applicable="metagraphs are kept whole for metadata",
    ),
    Option(
        "xla_cpu_compilation_enabled",
        BOOL,
        False,
        _NA_BOOL,
        not_applicable="XLA JIT is left to TensorFlow's defaults",
    ),
    Option(
        "enable_profiler",
        BOOL,
        True,
        _NA_BOOL,
        not_applicable="the TensorFlow profiler service is not exported",
    ),
    Option("mixed_precision", STR, "", not_applicable="not supported by the Session-based loader"),
    Option(
        "thread_pool_factory_config_file",
        STR,
        "",
        not_applicable="TensorFlow's own thread pools are used",
    ),
    Option(
        "skip_initialize_tpu",
        BOOL,
        False,
        _NA_BOOL,
        not_applicable="TPU system init is left to TensorFlow",
    ),
)

# servingd.yaml keys that set no one setting, read by name in config/servingd_yaml.py,
# with what a reload does with them.
YAML_KEYS_READ_BY_NAME: dict[str, Reload] = {
    "bind_address": Reload.RESTART,  # both listeners' address unless their section names one
    "enable_batching": Reload.LIVE,
    "batching": Reload.LIVE,
    "device": Reload.NEXT_LOAD,  # the default device of models that name none
}
# Keys of earlier releases, still accepted (an upgrade may keep an edited servingd.yaml)
# but ignored, with a warning saying why.
OBSOLETE_YAML_KEYS: dict[str, str] = {
    "inline_run_max_ms": "model runs never happen on the event-loop thread any more",
}

RESTART_ONLY: tuple[str, ...] = tuple(s.name for s in SETTINGS if s.reload is Reload.RESTART)
SECRET: frozenset[str] = frozenset(s.name for s in SETTINGS if s.secret)


def default_of(name: str) -> Any:
    """ServerSettings' field for setting `name`: its default, and kept out of repr when secret."""
    setting = BY_NAME[name]
    return field(default=setting.default, repr=not setting.secret)
