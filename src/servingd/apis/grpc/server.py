"""Builds the grpc.aio server: TF Serving's services, grpc.health.v1 and reflection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from servingd.apis.admission import InFlightLimiter
from servingd.apis.auth import BearerToken
from servingd.apis.grpc.method_guards import (
    admit_prediction_calls,
    local_peers_only_for_reload,
    require_token_for_reload,
)
from servingd.apis.grpc.model_service import ModelService, ReloadConfigHandler
from servingd.apis.grpc.prediction_service import PredictionService
from servingd.apis.grpc.registration import add_service
from servingd.apis.inference import InferenceRunner
from servingd.apis.model_info import ModelInfo
from servingd.apis.tf_example import ExampleApi
from servingd.apis.tls import TlsSettings
from servingd.wire.tensorflow_serving.apis import (
    model_service_pb2,
    prediction_service_pb2,
)

log = logging.getLogger(__name__)

# TF Serving sets no limit on message size (INT32_MAX); we do the same for replies. What a
# client may send is capped (--grpc_max_receive_message_bytes) like the REST body: a request
# larger than that gets RESOURCE_EXHAUSTED from gRPC itself before anything is decoded.
MAX_MESSAGE_BYTES = 2**31 - 1

# Connections that are idle, or whose peer vanished (half-open), are closed instead of
# pinning a slot forever: a keepalive ping every minute that must be answered in 20 s, and
# a connection with no call for 15 minutes is told to go away (clients reconnect as needed).
KEEPALIVE_CHANNEL_ARGUMENTS: dict[str, int | str] = {
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.max_connection_idle_ms": 15 * 60_000,
    # Clients may ping every 10 s without calls in flight (the grpc-go/Java default is
    # stricter and sends GOAWAY "too_many_pings" to well-behaved keepalive clients).
    "grpc.http2.min_ping_interval_without_data_ms": 10_000,
}


@dataclass(frozen=True)
class GrpcOptions:
    # The server's settings, with no defaults here: theirs live in config/schema.py.
    port: int
    bind_address: str
    socket_path: str
    max_receive_message_bytes: int
    channel_arguments: Sequence[tuple[str, int | str]]
    tls: TlsSettings | None
    check_method_name: bool  # --enable_signature_method_name_check
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # Admission control for PredictionService and the token for config reload (None: open).
    limiter: InFlightLimiter | None = None
    admin_token: BearerToken | None = None


class GrpcFrontEnd:
    """The gRPC listener(s) and their services. Create and use on the event loop."""

    def __init__(
        self,
        options: GrpcOptions,
        runner: InferenceRunner,
        models: ModelInfo,
        reload_config: ReloadConfigHandler | None = None,
    ) -> None:
        """`models`: status and metadata answers (shared with REST)."""
        # --grpc_channel_arguments override these defaults key by key.
        channel_args: dict[str, int | str] = {
            "grpc.max_receive_message_length": options.max_receive_message_bytes,
            "grpc.max_send_message_length": options.max_message_bytes,
            "grpc.so_reuseport": 0,
            **KEEPALIVE_CHANNEL_ARGUMENTS,
            **dict(options.channel_arguments),
        }
        self.server = grpc.aio.server(options=list(channel_args.items()))
        prediction = PredictionService(
            runner, models, ExampleApi(runner, check_method_name=options.check_method_name)
        )
        if options.limiter is not None:
            admit_prediction_calls(prediction, options.limiter)
        add_service(self.server, _service("PredictionService"), prediction)
        model_service = ModelService(models, reload_config)
        if options.admin_token is not None:
            require_token_for_reload(model_service, options.admin_token)
        else:
            local_peers_only_for_reload(model_service)
        add_service(self.server, _service("ModelService"), model_service)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                "tensorflow.serving.PredictionService",
                "tensorflow.serving.ModelService",
                health.SERVICE_NAME,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        self.addresses: list[str] = []
        if options.port:
            address = f"{_host(options.bind_address)}:{options.port}"
            if options.tls is not None:
                credentials = grpc.ssl_server_credentials(
                    [(options.tls.server_key, options.tls.server_cert)],
                    root_certificates=options.tls.custom_ca,
                    require_client_auth=options.tls.client_verify,
                )
                bound = self.server.add_secure_port(address, credentials)
            else:
                bound = self.server.add_insecure_port(address)
            self.addresses.append(f"{_host(options.bind_address)}:{bound}")
        if options.socket_path:
            self.server.add_insecure_port(f"unix:{options.socket_path}")
            self.addresses.append(f"unix:{options.socket_path}")

    async def start(self) -> None:
        await self.server.start()
        log.info("gRPC API listening on %s", ", ".join(self.addresses))

    async def set_serving(self, service: str, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set(service, status)

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)


def _service(name: str) -> ServiceDescriptor:
    module = prediction_service_pb2 if name == "PredictionService" else model_service_pb2
    service: ServiceDescriptor = module.DESCRIPTOR.services_by_name[name]
    return service


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address
