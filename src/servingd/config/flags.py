"""Command-line flags: tensorflow_model_server's, same names and defaults, plus servingd's own.

TF Serving's flag parser accepts `--name=value` and, for booleans, a bare `--name`;
argparse here accepts those and `--name value` too. Flags that have no meaning here are
accepted (so existing scripts keep working) and reported by `not_applicable_flags`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

# Flags accepted for compatibility that change nothing here, and why.
NOT_APPLICABLE: dict[str, str] = {
    "use_alts_credentials": "Google ALTS exists only inside Google Cloud",
    "platform_config_file": "only the tensorflow platform is served; use model_platform",
    "flush_filesystem_caches": "Python's loader keeps no filesystem cache to flush",
    "remove_unused_fields_from_bundle_metagraph": "metagraphs are kept whole for metadata",
    "xla_cpu_compilation_enabled": "XLA JIT is left to TensorFlow's defaults",
    "enable_profiler": "the TensorFlow profiler service is not exported",
    "grpc_max_threads": "grpc.aio serves all calls on the event loop",
    "rest_api_num_threads": "the REST API runs on the event loop",
    "mixed_precision": "not supported by the Session-based loader",
    "thread_pool_factory_config_file": "TensorFlow's own thread pools are used",
    "tensorflow_session_config_file": "set threads with --tensorflow_*_parallelism instead",
    "skip_initialize_tpu": "TPU system init is left to TensorFlow",
}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_bool(parser: argparse.ArgumentParser, name: str, default: bool, help_: str) -> None:
    parser.add_argument(
        f"--{name}", type=parse_bool, nargs="?", const=True, default=default, help=help_
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="servingd",
        description="A TensorFlow Serving-compatible model server. Accepts "
        "tensorflow_model_server's flags; see servingd(8).",
        allow_abbrev=False,
    )
    cpus = os.cpu_count() or 1
    # -- servingd's own -------------------------------------------------------------
    p.add_argument("--config", default="", help="servingd.yaml (e.g. /etc/servingd/servingd.yaml)")
    # --check-config is the spelling of the packaging (ExecStartPre=) and nginx -t's habit.
    p.add_argument(
        "--check_config",
        "--check-config",
        dest="check_config",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="validate the whole configuration (servingd.yaml, models.d, models.config) "
        "and exit 0 (valid) or 1, without serving",
    )
    p.add_argument(
        "--models_dir", default="", help="model drop-ins (*.yaml), e.g. /etc/servingd/models.d"
    )
    p.add_argument("--pid_file", default="", help="write the daemon's pid here while it runs")
    p.add_argument(
        "--log_target",
        default="auto",
        choices=("auto", "journald", "stderr"),
        help="auto: journald when systemd connected stderr to the journal",
    )
    p.add_argument("--grpc_bind_address", default="0.0.0.0", help="address for the gRPC port")
    p.add_argument("--rest_api_bind_address", default="0.0.0.0", help="address for REST")
    p.add_argument(
        "--version_settle_seconds",
        type=float,
        default=1.0,
        help="a new version dir must be unchanged this long before it is loaded",
    )
    p.add_argument(
        "--log_level",
        default="info",
        type=str.lower,
        choices=("debug", "info", "warning", "error", "critical"),
        help="debug, info, warning or error",
    )
    _add_bool(
        p,
        "fall_back_to_loadable_version",
        True,
        "under the latest policy, serve the newest version that loads when newer ones fail "
        "(false: TensorFlow Serving's strict behaviour)",
    )
    _add_bool(
        p, "gpu_memory_allow_growth", False, "let TensorFlow grow GPU memory as needed (GPU only)"
    )
    # Obsolete (model runs never happen on the event-loop thread): accepted, ignored.
    p.add_argument("--inline_run_max_ms", type=float, help=argparse.SUPPRESS)
    p.add_argument(
        "--compute_thread_nice",
        type=int,
        default=0,
        help="nice value (0-19) for the threads that load and run models, below the event "
        "loop's and gRPC's: under full CPU the front end admits requests first (0: off)",
    )
    p.add_argument(
        "--drain_grace_seconds",
        type=float,
        default=30.0,
        help="on SIGTERM, how long in-flight requests may take to finish",
    )
    # Limits and protection (see docs/reliability.md).
    p.add_argument(
        "--max_in_flight_requests",
        type=int,
        default=1024,
        help="inference requests served at once; more are refused at once with "
        "UNAVAILABLE / 503 (0: no cap)",
    )
    p.add_argument(
        "--max_in_flight_requests_per_model",
        type=int,
        default=0,
        help="the same cap for each model (0: no cap)",
    )
    p.add_argument(
        "--max_tensor_elements",
        type=int,
        default=64 * 1024 * 1024,
        help="tensor elements one request may carry, all inputs together (0: no limit)",
    )
    p.add_argument(
        "--grpc_max_receive_message_bytes",
        type=int,
        default=256 * 1024 * 1024,
        help="largest gRPC request accepted (RESOURCE_EXHAUSTED beyond it)",
    )
    p.add_argument(
        "--rest_api_max_body_bytes",
        type=int,
        default=256 * 1024 * 1024,
        help="largest REST request body accepted (413 beyond it)",
    )
    p.add_argument(
        "--rest_api_ssl_config_file",
        default="",
        help="TLS for the REST port: an SSLConfig text proto, as --ssl_config_file",
    )
    p.add_argument(
        "--admin_token_file",
        default="",
        help="file holding a bearer token required by state-changing endpoints (reload)",
    )
    # -- tensorflow_model_server's ---------------------------------------------------
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0 disables it)")
    p.add_argument("--grpc_socket_path", default="", help="also serve gRPC on this UNIX socket")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST port (0 disables it)")
    p.add_argument("--rest_api_num_threads", type=int, default=4 * cpus)
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    _add_bool(p, "rest_api_enable_cors_support", False, "add CORS headers to REST responses")
    _add_bool(p, "enable_batching", False, "batch requests (see --batching_parameters_file)")
    _add_bool(
        p,
        "allow_version_labels_for_unavailable_models",
        False,
        "allow new labels to point at versions that are not loaded yet",
    )
    p.add_argument("--batching_parameters_file", default="")
    _add_bool(
        p,
        "enable_per_model_batching_parameters",
        False,
        "read batching_params.pbtxt from each SavedModel dir",
    )
    p.add_argument("--model_config_file", default="", help="a ModelServerConfig text proto")
    p.add_argument("--model_config_file_poll_wait_seconds", type=int, default=0)
    p.add_argument("--model_name", default="default")
    p.add_argument("--model_base_path", default="")
    p.add_argument("--num_load_threads", type=int, default=0)
    p.add_argument("--num_unload_threads", type=int, default=0)
    p.add_argument("--max_num_load_retries", type=int, default=5)
    p.add_argument("--load_retry_interval_micros", type=int, default=60 * 1000 * 1000)
    p.add_argument("--file_system_poll_wait_seconds", type=int, default=1)
    _add_bool(p, "flush_filesystem_caches", True, "(not applicable here)")
    p.add_argument("--tensorflow_session_parallelism", type=int, default=0)
    p.add_argument("--tensorflow_session_config_file", default="")
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0)
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0)
    _add_bool(p, "use_alts_credentials", False, "(not applicable here)")
    p.add_argument("--ssl_config_file", default="")
    p.add_argument("--platform_config_file", default="")
    p.add_argument("--per_process_gpu_memory_fraction", type=float, default=0.0)
    p.add_argument("--saved_model_tags", default="serve")
    p.add_argument("--grpc_channel_arguments", default="")
    p.add_argument("--grpc_max_threads", type=int, default=4 * cpus)
    _add_bool(p, "enable_model_warmup", True, "replay assets.extra/tf_serving_warmup_requests")
    p.add_argument("--num_request_iterations_for_warmup", type=int, default=1)
    _add_bool(p, "version", False, "print the version and exit")
    p.add_argument("--monitoring_config_file", default="")
    _add_bool(p, "remove_unused_fields_from_bundle_metagraph", True, "(not applicable here)")
    _add_bool(
        p,
        "prefer_tflite_model",
        False,
        "a version with both saved_model.pb and model.tflite loads the TF Lite model",
    )
    p.add_argument(
        "--num_tflite_pools",
        type=int,
        default=1,
        help="TF Lite: interpreter pools per version (interpreters = pools x per pool)",
    )
    p.add_argument(
        "--num_tflite_interpreters_per_pool",
        type=int,
        default=1,
        help="TF Lite: interpreters per pool",
    )
    _add_bool(
        p,
        "enable_signature_method_name_check",
        False,
        "Classify/Regress/MultiInference also check the signature's method_name",
    )
    _add_bool(p, "xla_cpu_compilation_enabled", False, "(not applicable here)")
    _add_bool(p, "enable_profiler", True, "(not applicable here)")
    p.add_argument("--mixed_precision", default="")
    p.add_argument("--thread_pool_factory_config_file", default="")
    _add_bool(p, "skip_initialize_tpu", False, "(not applicable here)")
    return p


def parse_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def explicit_flags(argv: Sequence[str] | None = None) -> set[str]:
    """The flags (dest names) given on the command line, whatever their value.

    Settings precedence is command line > servingd.yaml > built-in defaults, so a flag
    only overrides the YAML when it was given, even if it was given its default value.
    """
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def not_applicable_flags(args: argparse.Namespace) -> dict[str, str]:
    """Flags set to a non-default value that do nothing here, with the reason."""
    defaults = build_parser().parse_args([])
    return {
        name: reason
        for name, reason in NOT_APPLICABLE.items()
        if getattr(args, name) != getattr(defaults, name)
    }


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
