"""tensorflow.serving.ModelService over grpc.aio: status and config reload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from servingd.apis.grpc.model_spec import model_request
from servingd.apis.grpc.prediction_service import abort_with
from servingd.apis.model_info import ModelInfo
from servingd.core.errors import InvalidArgument, Unimplemented
from servingd.wire.tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
)

# Applies a new ModelServerConfig proto and returns when its models are settled; raises
# ServingError when it is refused. Provided by the daemon (None: reload not supported).
ReloadConfigHandler = Callable[[Any], Awaitable[None]]


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, models: ModelInfo, reload_config: ReloadConfigHandler | None = None):
        self._models = models
        self._reload_config = reload_config

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return self._models.model_status(model_request(request))
        except Exception as exc:
            await abort_with(context, exc)

    async def HandleReloadConfigRequest(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        try:
            if self._reload_config is None:
                raise Unimplemented("This server was started without a reloadable model config")
            # TF Serving (model_service_impl.cc) applies only a model_config_list; an empty
            # request, or another kind of config, is refused and changes nothing.
            if request.config.WhichOneof("config") != "model_config_list":
                raise InvalidArgument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported"
                )
            await self._reload_config(request.config)
            return model_management_pb2.ReloadConfigResponse()
        except Exception as exc:
            await abort_with(context, exc)
