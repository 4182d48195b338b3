"""Admission control for inference and auth for reload, wrapped around servicer methods.

The in-flight cap and the tensor-size limit apply to PredictionService; who may call
ModelService.HandleReloadConfigRequest is checked too: the holder of the bearer token when
one is configured, else only a client on the same machine (loopback or the unix socket: a
config reload can unload every model). grpc.health.v1 and reflection are never limited.

They wrap the servicer's bound methods once, before registration, instead of being
grpc.aio ServerInterceptors: an aio interceptor runs for every call of every service and
builds a new method handler per call (measured: ~20-40 us of event-loop time per request
on the 2-core bench box, for an interceptor that only delegates).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from servingd.apis.admission import InFlightLimiter, check_tensor_protos
from servingd.apis.auth import BearerToken
from servingd.apis.grpc.prediction_service import abort_with
from servingd.core.errors import PermissionDenied

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

# PredictionService's unary methods (as TF Serving's prediction_service.proto lists them).
PREDICTION_METHODS = ("Predict", "Classify", "Regress", "MultiInference", "GetModelMetadata")
RELOAD_METHOD = "HandleReloadConfigRequest"


def _model_name(request: Any) -> str:
    if hasattr(request, "model_spec"):
        return str(request.model_spec.name)
    tasks = getattr(request, "tasks", None)  # MultiInference: the first task's model
    return str(tasks[0].model_spec.name) if tasks else ""


def _admitted(inner: Behavior, limiter: InFlightLimiter, is_predict: bool) -> Behavior:
    async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if is_predict:
                check_tensor_protos(request.inputs, limiter.options.max_tensor_elements)
            release = limiter.acquire(_model_name(request))
        except Exception as exc:
            await abort_with(context, exc)
        try:
            return await inner(request, context)
        finally:
            release()

    return admitted


def admit_prediction_calls(servicer: Any, limiter: InFlightLimiter) -> None:
    """Puts every PredictionService method of `servicer` under `limiter` (in place)."""
    for name in PREDICTION_METHODS:
        setattr(servicer, name, _admitted(getattr(servicer, name), limiter, name == "Predict"))


def _is_local_peer(peer: str) -> bool:
    """Whether gRPC's peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``,
    ``unix:/run/servingd.sock``) names a client on this machine."""
    kind, _, address = peer.partition(":")
    if kind == "unix" or kind == "unix-abstract":
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def local_peers_only_for_reload(servicer: Any) -> None:
    """Makes `servicer`'s HandleReloadConfigRequest refuse clients on other machines."""
    inner: Behavior = getattr(servicer, RELOAD_METHOD)

    async def local_only(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not _is_local_peer(context.peer() or ""):
            await abort_with(
                context,
                PermissionDenied(
                    "HandleReloadConfigRequest is accepted only from this machine (loopback or "
                    "the unix socket) unless the server has an admin_token_file"
                ),
            )
        return await inner(request, context)

    setattr(servicer, RELOAD_METHOD, local_only)


def require_token_for_reload(servicer: Any, token: BearerToken) -> None:
    """Makes `servicer`'s HandleReloadConfigRequest refuse calls without the bearer token."""
    inner: Behavior = getattr(servicer, RELOAD_METHOD)

    async def authorized(request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        try:
            token.check(authorization if isinstance(authorization, str) else None)
        except Exception as exc:
            await abort_with(context, exc)
        return await inner(request, context)

    setattr(servicer, RELOAD_METHOD, authorized)
