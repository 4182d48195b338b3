"""TF Serving's SSLConfig text proto (`--ssl_config_file`): TLS for the gRPC port.

As in TF Serving, the fields hold PEM text, not paths: server_key, server_cert, custom_ca
(the CA that client certificates must chain to), client_verify (mutual TLS).
"""

from __future__ import annotations

from servingd.apis.tls import TlsSettings
from servingd.compat.tf_serving_config_pb2 import SSLConfig
from servingd.config.errors import ConfigError
from servingd.core.text_proto import parse_text_proto

__all__ = ["TlsSettings", "load_ssl_config"]


def load_ssl_config(path: str) -> TlsSettings:
    config = parse_text_proto(path, SSLConfig())
    if not config.server_key or not config.server_cert:
        raise ConfigError(path, None, "SSLConfig needs both server_key and server_cert (PEM text)")
    for field in ("server_key", "server_cert", "custom_ca"):
        value = getattr(config, field)
        if value and "-----BEGIN " not in value:
            raise ConfigError(
                path, None, f"SSLConfig.{field} must hold PEM text (as in TF Serving), not a path"
            )
    if config.client_verify and not config.custom_ca:
        raise ConfigError(path, None, "SSLConfig.client_verify needs custom_ca to verify clients")
    return TlsSettings(
        server_key=config.server_key.encode(),
        server_cert=config.server_cert.encode(),
        custom_ca=config.custom_ca.encode() if config.custom_ca else None,
        client_verify=config.client_verify,
    )
