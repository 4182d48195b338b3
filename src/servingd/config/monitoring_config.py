"""TF Serving's MonitoringConfig text proto (`--monitoring_config_file`)."""

from __future__ import annotations

from servingd.compat.tf_serving_config_pb2 import MonitoringConfig
from servingd.core.text_proto import parse_text_proto

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def load_prometheus_path(path: str) -> str | None:
    """The metrics path when prometheus_config.enable is set, else None."""
    config = parse_text_proto(path, MonitoringConfig())
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    metrics_path = prometheus.path or DEFAULT_PROMETHEUS_PATH
    if not metrics_path.startswith("/"):
        from servingd.config.errors import ConfigError

        raise ConfigError(
            path, None, f"prometheus_config.path must start with '/': {metrics_path!r}"
        )
    return str(metrics_path)
