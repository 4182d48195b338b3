"""Which gRPC peers count as this machine for model management (method_guards)."""

from __future__ import annotations

import pytest

from servingd.apis.grpc.method_guards import _is_local_peer


@pytest.mark.parametrize(
    "peer",
    [
        "ipv4:127.0.0.1:5000",
        "ipv4:127.3.4.5:1",
        "ipv6:[::1]:5000",
        "unix:/run/servingd.sock",
        "unix:",
        "ipv6:[::ffff:127.0.0.1]:80",
    ],
)
def test_local(peer: str) -> None:
    assert _is_local_peer(peer)


@pytest.mark.parametrize(
    "peer",
    ["ipv4:192.0.2.2:5000", "ipv6:[2001:db8::1]:5000", "ipv6:[::ffff:10.0.0.1]:80", "", "garbage"],
)
def test_remote(peer: str) -> None:
    assert not _is_local_peer(peer)
