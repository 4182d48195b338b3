"""ServerSettings: everything the daemon needs, from flags and servingd.yaml.

Each field's default, flag, YAML key, check and reload behaviour are declared once, in
`config/schema.py`; a field here has only its type and `default_of` its own name.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from servingd.batching.parameters import BatchingParameters
from servingd.batching.text_proto import load_batching_parameters_file
from servingd.config.errors import ConfigError
from servingd.config.flags import flag_values
from servingd.config.model_server_config import load_model_server_config
from servingd.config.models import ModelConfig
from servingd.config.schema import default_of
from servingd.config.ssl_config import TlsSettings
from servingd.sources.s3.options import S3Credentials


@dataclass(frozen=True)
class ServerSettings:
    grpc_port: int = default_of("grpc_port")
    grpc_bind_address: str = default_of("grpc_bind_address")
    grpc_socket_path: str = default_of("grpc_socket_path")
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = default_of("grpc_channel_arguments")
    rest_port: int = default_of("rest_port")
    rest_bind_address: str = default_of("rest_bind_address")
    rest_timeout_ms: int = default_of("rest_timeout_ms")
    rest_enable_cors: bool = default_of("rest_enable_cors")
    models: tuple[ModelConfig, ...] = default_of("models")
    model_config_file: str = default_of("model_config_file")
    model_config_file_poll_wait_s: float = default_of("model_config_file_poll_wait_s")
    file_system_poll_wait_s: float = default_of("file_system_poll_wait_s")
    version_settle_s: float = default_of("version_settle_s")
    num_load_threads: int = default_of("num_load_threads")
    num_unload_threads: int = default_of("num_unload_threads")
    max_num_load_retries: int = default_of("max_num_load_retries")
    load_retry_interval_s: float = default_of("load_retry_interval_s")
    # servingd's own: under `latest`, serve the newest version that loads when newer ones
    # fail (false: TF Serving's strict behaviour, nothing served for that model).
    fall_back_to_loadable_version: bool = default_of("fall_back_to_loadable_version")
    allow_version_labels_for_unavailable_models: bool = default_of(
        "allow_version_labels_for_unavailable_models"
    )
    saved_model_tags: frozenset[str] = default_of("saved_model_tags")
    saved_model_runtime: str = default_of("saved_model_runtime")
    intra_op_parallelism: int = default_of("intra_op_parallelism")
    inter_op_parallelism: int = default_of("inter_op_parallelism")
    per_process_gpu_memory_fraction: float = default_of("per_process_gpu_memory_fraction")
    gpu_allow_growth: bool = default_of("gpu_allow_growth")
    log_level: str = default_of("log_level")
    drain_grace_s: float = default_of("drain_grace_s")
    compute_thread_nice: int = default_of("compute_thread_nice")
    # servingd's own: where the configuration came from, and process housekeeping.
    config_file: str = default_of("config_file")
    models_dir: str = default_of("models_dir")
    model_root: str = default_of("model_root")
    pid_file: str = default_of("pid_file")
    log_target: str = default_of("log_target")
    # --enable_batching and --batching_parameters_file: the default for every model that
    # has no batching section of its own (None when batching is off).
    batching: BatchingParameters | None = default_of("batching")
    # --enable_per_model_batching_parameters: with batching on, a model without a batching
    # section of its own is batched with the batching_params.pbtxt of its version directory,
    # and not batched when there is none (TF Serving's rule).
    per_model_batching_parameters: bool = default_of("per_model_batching_parameters")
    # --enable_model_warmup / --num_request_iterations_for_warmup (TF Serving's defaults).
    enable_model_warmup: bool = default_of("enable_model_warmup")
    num_request_iterations_for_warmup: int = default_of("num_request_iterations_for_warmup")
    # --monitoring_config_file: where Prometheus metrics are served on the REST port.
    prometheus_path: str | None = default_of("prometheus_path")
    # --enable_signature_method_name_check (TF Serving 2.x: off).
    enable_signature_method_name_check: bool = default_of("enable_signature_method_name_check")
    # --ssl_config_file: TLS (optionally mutual) on the gRPC TCP port.
    grpc_tls: TlsSettings | None = default_of("grpc_tls")
    # --rest_api_ssl_config_file: TLS (optionally mutual) on the REST port.
    rest_tls: TlsSettings | None = default_of("rest_tls")
    # Limits (docs/reliability.md); 0 means no cap.
    max_in_flight: int = default_of("max_in_flight")
    max_in_flight_per_model: int = default_of("max_in_flight_per_model")
    max_tensor_elements: int = default_of("max_tensor_elements")
    grpc_max_receive_bytes: int = default_of("grpc_max_receive_bytes")
    rest_max_body_bytes: int = default_of("rest_max_body_bytes")
    # --prefer_tflite_model: a version with saved_model.pb and model.tflite loads TF Lite.
    prefer_tflite_model: bool = default_of("prefer_tflite_model")
    # --num_tflite_pools x --num_tflite_interpreters_per_pool: a TF Lite version's
    # interpreters (calls that run at once) unless its model sets `interpreters`.
    num_tflite_pools: int = default_of("num_tflite_pools")
    num_tflite_interpreters_per_pool: int = default_of("num_tflite_interpreters_per_pool")
    # --admin_token_file: bearer token for state-changing endpoints (None: open).
    admin_token: str | None = default_of("admin_token")
    # s3:// base paths (servingd.yaml's s3: section; docs/configuration.md). Left empty,
    # the variables of TF Serving's S3 file system apply (servingd.sources.s3.options).
    s3_endpoint: str = default_of("s3_endpoint")
    s3_region: str = default_of("s3_region")
    s3_path_style: bool | None = default_of("s3_path_style")
    s3_ca_bundle: str = default_of("s3_ca_bundle")
    s3_poll_interval_s: float = default_of("s3_poll_interval_s")
    s3_settle_s: float = default_of("s3_settle_s")
    s3_cache_dir: str = default_of("s3_cache_dir")
    # s3.credentials_file, else systemd's $CREDENTIALS_DIRECTORY/s3 (LoadCredential=).
    s3_credentials: S3Credentials | None = default_of("s3_credentials")


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
    values = flag_values(args)
    # TF Serving's --tensorflow_session_parallelism: both pools, unless one is given.
    for name in ("intra_op_parallelism", "inter_op_parallelism"):
        values[name] = values[name] or args.tensorflow_session_parallelism
    batching: BatchingParameters | None = None
    if args.enable_batching:
        # As tensorflow_model_server: the file only counts with --enable_batching.
        batching = (
            load_batching_parameters_file(args.batching_parameters_file)
            if args.batching_parameters_file
            else BatchingParameters()
        )
    return ServerSettings(models=models, batching=batching, **values)
