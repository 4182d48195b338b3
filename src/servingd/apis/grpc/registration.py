"""Registers a servicer's unary methods with the grpc.aio server, with our own message
(de)serializers instead of the generated ones.

- A request that does not parse becomes `Undecodable` instead of an exception inside
  grpc.aio (which logs a traceback per request and answers UNKNOWN): the method answers
  INTERNAL, as a C++ gRPC server such as TF Serving does, and nothing is logged.
- A method may return its response already serialized (bytes): grpc.aio serializes on the
  event loop, which for a large answer is work the loop must not do (the Predict of a
  large output serializes it on a worker thread).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from servingd.apis.errors import truncated

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class Undecodable:
    """What a request that is not a valid message of its type deserializes to."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _deserializer(message_class: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return Undecodable(str(exc))

    return parse


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else bytes(message.SerializeToString())


def _parsed_only(behavior: Behavior, type_name: str) -> Behavior:
    async def method(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"Failed to parse the request as {type_name}: {truncated(request.error)}",
            )
        return await behavior(request, context)

    return method


def add_service(server: grpc.aio.Server, service: ServiceDescriptor, servicer: Any) -> None:
    """Registers `servicer`'s method for every (unary) method of `service`."""
    handlers = {}
    for method in service.methods:
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _parsed_only(getattr(servicer, method.name), method.input_type.full_name),
            request_deserializer=_deserializer(GetMessageClass(method.input_type)),
            response_serializer=_serialize,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
