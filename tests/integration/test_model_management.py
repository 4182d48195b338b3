"""Model management over gRPC: what HandleReloadConfigRequest refuses, and who may call it.

An empty ReloadConfigRequest (no config set) or a config other than a model_config_list is
refused with TF Serving's INVALID_ARGUMENT, and every model keeps serving. Without an
admin_token_file, only clients on this machine (loopback, the unix socket) may reload; a
client reaching a non-loopback address gets PERMISSION_DENIED; with a token, whoever holds
it may.
"""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from integration.test_model_config import good_config, predict
from support.servingd_process import ServingdProcess

UNSUPPORTED = "ServerModelConfig type not supported by HandleReloadConfigRequest"


def _outward_address() -> str | None:
    """An address of this machine other than loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def _reload(target: str, request: object, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        stub.HandleReloadConfigRequest(request, timeout=60, metadata=metadata)


def _refusal(target: str, request: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        _reload(target, request, **kwargs)  # type: ignore[arg-type]
    return refused.value


def test_an_empty_or_unsupported_reload_changes_nothing(testdata: Path, tmp_path: Path) -> None:
    config = good_config(testdata, tmp_path)
    with ServingdProcess([f"--model_config_file={config}"]) as server:
        server.wait_healthy()
        custom = model_server_config_pb2.ModelServerConfig()
        custom.custom_model_config.type_url = "type.googleapis.com/x"
        for request in (
            model_management_pb2.ReloadConfigRequest(),
            model_management_pb2.ReloadConfigRequest(config=custom),
        ):
            refused = _refusal(server.grpc_target, request)
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert UNSUPPORTED in (refused.details() or "")
        assert predict(server.channel(), "half_plus_two") == 3.0
        assert predict(server.channel(), "half_plus_three") == 4.0


@pytest.mark.parametrize("token", [False, True])
def test_reload_from_another_machine_needs_the_admin_token(
    testdata: Path, tmp_path: Path, token: bool
) -> None:
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address other than loopback")
    config = good_config(testdata, tmp_path)
    flags = [f"--model_config_file={config}", "--grpc_bind_address=0.0.0.0"]
    if token:
        (tmp_path / "token").write_text("s3cret\n")
        (tmp_path / "token").chmod(0o600)
        flags.append(f"--admin_token_file={tmp_path / 'token'}")
    with ServingdProcess(flags) as server:
        server.wait_healthy()
        empty = model_management_pb2.ReloadConfigRequest()
        remote = f"{outward}:{server.grpc_port}"
        if token:
            with_token = (("authorization", "Bearer s3cret"),)
            refused = _refusal(remote, empty)
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            # Past the token check: the empty config itself is what is refused.
            refused = _refusal(remote, empty, metadata=with_token)
        else:
            refused = _refusal(remote, empty)
            assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "admin_token_file" in (refused.details() or "")
            refused = _refusal(f"127.0.0.1:{server.grpc_port}", empty)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert predict(server.channel(), "half_plus_two") == 3.0
