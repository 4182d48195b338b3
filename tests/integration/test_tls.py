"""--ssl_config_file: TLS and mutual TLS on the gRPC port, with certificates made per test."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.certs import make_pki
from support.servingd_process import ServingdProcess, servingd_command

SERVING = health_pb2.HealthCheckResponse.SERVING


def ssl_config(path: Path, key: bytes, cert: bytes, ca: bytes | None, verify: bool) -> Path:
    def quoted(pem: bytes) -> str:
        return '"' + pem.decode().replace("\n", "\\n") + '"'

    lines = [f"server_key: {quoted(key)}", f"server_cert: {quoted(cert)}"]
    if ca:
        lines.append(f"custom_ca: {quoted(ca)}")
    lines.append(f"client_verify: {str(verify).lower()}")
    path.write_text("\n".join(lines) + "\n")
    return path


def health(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status)


@pytest.mark.slow
def test_mutual_tls(testdata: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    config = ssl_config(tmp_path / "ssl.config", pki.server_key, pki.server_cert, pki.ca_cert, True)
    base = testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess(
        ["--model_name=half_plus_two", f"--model_base_path={base}", f"--ssl_config_file={config}"],
        rest=False,
    ) as server:
        target = f"localhost:{server.grpc_port}"
        with_client_cert = grpc.ssl_channel_credentials(
            root_certificates=pki.ca_cert,
            private_key=pki.client_key,
            certificate_chain=pki.client_cert,
        )
        for _ in range(600):  # wait for the port and the model
            try:
                with grpc.secure_channel(target, with_client_cert) as channel:
                    if health(channel) == SERVING:
                        break
            except grpc.RpcError:
                server.assert_running()
            time.sleep(0.2)
        with grpc.secure_channel(target, with_client_cert) as channel:
            assert health(channel) == SERVING
        without_client_cert = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert)
        with (
            grpc.secure_channel(target, without_client_cert) as channel,
            pytest.raises(grpc.RpcError),
        ):
            health(channel)
        with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError):
            health(channel)


def test_ssl_config_with_paths_instead_of_pem_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "ssl.config"
    config.write_text('server_key: "/etc/key.pem"\nserver_cert: "/etc/cert.pem"\n')
    result = subprocess.run(
        [
            *servingd_command(),
            "--model_base_path=/nonexistent",
            f"--ssl_config_file={config}",
            "--check_config",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "must hold PEM text" in result.stderr and str(config) in result.stderr


@pytest.mark.slow
def test_rest_tls_and_mutual_tls(testdata: Path, tmp_path: Path) -> None:
    import json
    import ssl
    import urllib.error
    import urllib.request

    pki = make_pki(tmp_path)
    config = ssl_config(
        tmp_path / "rest.config", pki.server_key, pki.server_cert, pki.ca_cert, True
    )
    base = testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={base}",
            f"--rest_api_ssl_config_file={config}",
        ],
    ) as server:
        server.wait_healthy()
        url = f"https://localhost:{server.rest_port}/v1/models/half_plus_two:predict"
        body = json.dumps({"instances": [1.0, 2.0]}).encode()
        (tmp_path / "ca.pem").write_bytes(pki.ca_cert)
        (tmp_path / "client.pem").write_bytes(pki.client_cert)
        (tmp_path / "client.key").write_bytes(pki.client_key)
        client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        client.load_cert_chain(str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
        with urllib.request.urlopen(
            urllib.request.Request(url, data=body), context=client, timeout=30
        ) as reply:
            assert json.loads(reply.read()) == {"predictions": [2.5, 3.0]}
        anonymous = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(urllib.request.Request(url, data=body), context=anonymous)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(
                f"http://localhost:{server.rest_port}/healthz", timeout=10
            ).read()
