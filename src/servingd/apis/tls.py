"""TlsSettings: the PEM material of one listener (gRPC or REST).

Defined here, where the front ends use it; config's SSLConfig reader builds it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TlsSettings:
    server_key: bytes
    server_cert: bytes
    custom_ca: bytes | None
    client_verify: bool
