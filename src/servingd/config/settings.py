"""ServerSettings: everything the daemon needs, from flags (and later servingd.yaml)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from servingd.batching.parameters import BatchingParameters
from servingd.batching.text_proto import load_batching_parameters_file
from servingd.config.admin_token import load_admin_token
from servingd.config.errors import ConfigError
from servingd.config.flags import parse_channel_arguments
from servingd.config.model_server_config import load_model_server_config
from servingd.config.models import ModelConfig
from servingd.config.monitoring_config import load_prometheus_path
from servingd.config.ssl_config import TlsSettings, load_ssl_config
from servingd.core.thread_priority import MAX_NICE
from servingd.sources.s3.options import (
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_SETTLE_S,
    S3Credentials,
)


@dataclass(frozen=True)
class ServerSettings:
    grpc_port: int = 8500
    grpc_bind_address: str = "0.0.0.0"
    grpc_socket_path: str = ""
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()
    rest_port: int = 0
    rest_bind_address: str = "0.0.0.0"
    rest_timeout_ms: int = 30000
    rest_enable_cors: bool = False
    models: tuple[ModelConfig, ...] = ()
    model_config_file: str = ""
    model_config_file_poll_wait_s: float = 0.0
    file_system_poll_wait_s: float = 1.0
    version_settle_s: float = 1.0
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_s: float = 60.0
    # servingd's own: under `latest`, serve the newest version that loads when newer ones
    # fail (false: TF Serving's strict behaviour, nothing served for that model).
    fall_back_to_loadable_version: bool = True
    allow_version_labels_for_unavailable_models: bool = False
    saved_model_tags: frozenset[str] = field(default_factory=lambda: frozenset({"serve"}))
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    per_process_gpu_memory_fraction: float = 0.0
    gpu_allow_growth: bool = False
    log_level: str = "info"
    drain_grace_s: float = 30.0
    compute_thread_nice: int = 0  # servingd's own: see servingd.core.thread_priority
    # servingd's own: where the configuration came from, and process housekeeping.
    config_file: str = ""
    models_dir: str = ""
    model_root: str = ""
    pid_file: str = ""
    log_target: str = "auto"
    # --enable_batching and --batching_parameters_file: the default for every model that
    # has no batching section of its own (None when batching is off).
    batching: BatchingParameters | None = None
    # --enable_per_model_batching_parameters: with batching on, a model without a batching
    # section of its own is batched with the batching_params.pbtxt of its version directory,
    # and not batched when there is none (TF Serving's rule).
    per_model_batching_parameters: bool = False
    # --enable_model_warmup / --num_request_iterations_for_warmup (TF Serving's defaults).
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    # --monitoring_config_file: where Prometheus metrics are served on the REST port.
    prometheus_path: str | None = None
    # --enable_signature_method_name_check (TF Serving 2.x: off).
    enable_signature_method_name_check: bool = False
    # --ssl_config_file: TLS (optionally mutual) on the gRPC TCP port.
    grpc_tls: TlsSettings | None = None
    # --rest_api_ssl_config_file: TLS (optionally mutual) on the REST port.
    rest_tls: TlsSettings | None = None
    # Limits (docs/reliability.md); 0 means no cap.
    max_in_flight: int = 1024
    max_in_flight_per_model: int = 0
    max_tensor_elements: int = 64 * 1024 * 1024
    grpc_max_receive_bytes: int = 256 * 1024 * 1024
    rest_max_body_bytes: int = 256 * 1024 * 1024
    # --prefer_tflite_model: a version with saved_model.pb and model.tflite loads TF Lite.
    prefer_tflite_model: bool = False
    # --num_tflite_pools x --num_tflite_interpreters_per_pool: a TF Lite version's
    # interpreters (calls that run at once) unless its model sets `interpreters`.
    num_tflite_pools: int = 1
    num_tflite_interpreters_per_pool: int = 1
    # --admin_token_file: bearer token for state-changing endpoints (None: open).
    admin_token: str | None = field(default=None, repr=False)
    # s3:// base paths (servingd.yaml's s3: section; docs/configuration.md). Left empty,
    # the variables of TF Serving's S3 file system apply (servingd.sources.s3.options).
    s3_endpoint: str = ""
    s3_region: str = ""
    s3_path_style: bool | None = None  # None: path-style when an endpoint is set
    s3_ca_bundle: str = ""
    s3_poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    s3_settle_s: float = DEFAULT_SETTLE_S
    s3_cache_dir: str = ""  # "": $CACHE_DIRECTORY/s3, else /var/cache/servingd/s3
    # s3.credentials_file, else systemd's $CREDENTIALS_DIRECTORY/s3 (LoadCredential=).
    s3_credentials: S3Credentials | None = field(default=None, repr=False)


def check_listeners(settings: ServerSettings, where: str = "command line") -> None:
    """tensorflow_model_server's checks of the ports; ConfigError when they fail."""
    s = settings
    if s.grpc_port and s.rest_port and s.grpc_port == s.rest_port:
        raise ConfigError(where, None, "--rest_api_port cannot be same as --port")
    if s.grpc_port == 0 and not s.grpc_socket_path and s.rest_port == 0:
        raise ConfigError(where, None, "--port=0 and no other listener: nothing to serve on")


def settings_from_flags(args: argparse.Namespace) -> ServerSettings:
    """Validates flags the way tensorflow_model_server does and builds the settings."""
    if not args.config:  # with --config, checked once servingd.yaml is merged in
        check_listeners(
            ServerSettings(
                grpc_port=args.port,
                grpc_socket_path=args.grpc_socket_path,
                rest_port=args.rest_api_port,
            )
        )
    models: tuple[ModelConfig, ...] = ()
    if args.model_config_file:
        models = tuple(load_model_server_config(args.model_config_file))
    elif args.model_base_path:
        models = (
            ModelConfig(
                name=args.model_name, base_path=args.model_base_path, origin="command line"
            ),
        )
    elif not args.config and not args.models_dir:
        raise ConfigError(
            "command line",
            None,
            "Both server_model_config_file and model_base_path are empty: give "
            "--model_base_path (with --model_name), --model_config_file or --config",
        )
    try:
        channel_arguments = tuple(parse_channel_arguments(args.grpc_channel_arguments))
    except ValueError as exc:
        raise ConfigError("command line", None, str(exc)) from None
    parallelism = args.tensorflow_session_parallelism
    if args.num_request_iterations_for_warmup < 1:
        raise ConfigError(
            "command line", None, "--num_request_iterations_for_warmup must be at least 1"
        )
    prometheus_path = (
        load_prometheus_path(args.monitoring_config_file) if args.monitoring_config_file else None
    )
    if not 0.0 <= args.per_process_gpu_memory_fraction <= 1.0:
        raise ConfigError(
            "command line",
            None,
            "--per_process_gpu_memory_fraction must be within [0, 1], got "
            f"{args.per_process_gpu_memory_fraction}",
        )
    if not 0 <= args.compute_thread_nice <= MAX_NICE:
        raise ConfigError(
            "command line",
            None,
            f"--compute_thread_nice must be within [0, {MAX_NICE}], got {args.compute_thread_nice}",
        )
    for flag in ("num_tflite_pools", "num_tflite_interpreters_per_pool"):
        if getattr(args, flag) < 1:
            raise ConfigError("command line", None, f"--{flag} must be at least 1")
    for flag in (
        "max_in_flight_requests",
        "max_in_flight_requests_per_model",
        "max_tensor_elements",
        "grpc_max_receive_message_bytes",
        "rest_api_max_body_bytes",
    ):
        if getattr(args, flag) < 0:
            raise ConfigError("command line", None, f"--{flag} must be 0 or more")
    batching: BatchingParameters | None = None
    if args.enable_batching:
        # As tensorflow_model_server: the file only counts with --enable_batching.
        batching = (
            load_batching_parameters_file(args.batching_parameters_file)
            if args.batching_parameters_file
            else BatchingParameters()
        )
    return ServerSettings(
        grpc_port=args.port,
        grpc_bind_address=args.grpc_bind_address,
        grpc_socket_path=args.grpc_socket_path,
        grpc_channel_arguments=channel_arguments,
        rest_port=args.rest_api_port,
        rest_bind_address=args.rest_api_bind_address,
        rest_timeout_ms=args.rest_api_timeout_in_ms,
        rest_enable_cors=args.rest_api_enable_cors_support,
        models=models,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_s=float(args.model_config_file_poll_wait_seconds),
        file_system_poll_wait_s=float(args.file_system_poll_wait_seconds),
        version_settle_s=args.version_settle_seconds,
        num_load_threads=args.num_load_threads,
        num_unload_threads=args.num_unload_threads,
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_s=max(args.load_retry_interval_micros, 0) / 1e6,
        fall_back_to_loadable_version=args.fall_back_to_loadable_version,
        allow_version_labels_for_unavailable_models=(
            args.allow_version_labels_for_unavailable_models
        ),
        saved_model_tags=frozenset(
            t.strip() for t in args.saved_model_tags.split(",") if t.strip()
        ),
        intra_op_parallelism=args.tensorflow_intra_op_parallelism or parallelism,
        inter_op_parallelism=args.tensorflow_inter_op_parallelism or parallelism,
        per_process_gpu_memory_fraction=args.per_process_gpu_memory_fraction,
        gpu_allow_growth=args.gpu_memory_allow_growth,
        batching=batching,
        per_model_batching_parameters=args.enable_per_model_batching_parameters,
        log_level=args.log_level,
        drain_grace_s=args.drain_grace_seconds,
        compute_thread_nice=args.compute_thread_nice,
        config_file=args.config,
        models_dir=args.models_dir,
        pid_file=args.pid_file,
        log_target=args.log_target,
        prometheus_path=prometheus_path,
        enable_signature_method_name_check=args.enable_signature_method_name_check,
        grpc_tls=load_ssl_config(args.ssl_config_file) if args.ssl_config_file else None,
        enable_model_warmup=args.enable_model_warmup,
        num_request_iterations_for_warmup=args.num_request_iterations_for_warmup,
        rest_tls=(
            load_ssl_config(args.rest_api_ssl_config_file)
            if args.rest_api_ssl_config_file
            else None
        ),
        max_in_flight=args.max_in_flight_requests,
        max_in_flight_per_model=args.max_in_flight_requests_per_model,
        max_tensor_elements=args.max_tensor_elements,
        grpc_max_receive_bytes=args.grpc_max_receive_message_bytes or 2**31 - 1,
        rest_max_body_bytes=args.rest_api_max_body_bytes or 2**62,
        prefer_tflite_model=args.prefer_tflite_model,
        num_tflite_pools=args.num_tflite_pools,
        num_tflite_interpreters_per_pool=args.num_tflite_interpreters_per_pool,
        admin_token=load_admin_token(args.admin_token_file) if args.admin_token_file else None,
    )
