"""tensorflow.serving.PredictionService over grpc.aio."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import numpy as np

from servingd.apis.admission import tensor_proto_elements
from servingd.apis.errors import as_serving_error, grpc_status, public_message
from servingd.apis.grpc.model_spec import fill_model_spec, model_request
from servingd.apis.inference import (
    OFF_LOOP_ELEMENTS,
    InferenceRunner,
    PredictPlan,
    PredictResult,
)
from servingd.apis.model_info import ModelInfo
from servingd.apis.request_metrics import GRPC, observe_request
from servingd.apis.tf_example import ExampleApi
from servingd.core.errors import InvalidArgument
from servingd.servables.codecs import ndarray_to_tensor_proto, tensor_proto_to_ndarray
from servingd.wire.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

log = logging.getLogger(__name__)

_SIGNATURE_DEF_FIELD = "signature_def"


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """Ends the call with the status that `exc` maps to (see servingd.apis.errors)."""
    error = as_serving_error(exc)
    await context.abort(grpc_status(error), public_message(error))


def _decode_inputs(protos: Any) -> dict[str, np.ndarray]:
    return {alias: tensor_proto_to_ndarray(t) for alias, t in protos.items()}


def _predict_response(result: PredictResult) -> Any:
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, result.id.name, result.id.version, result.signature_name)
    for alias, array in result.outputs.items():
        # Typed *_val fields, as TF Serving writes them: clients read `float_val`.
        ndarray_to_tensor_proto(array, response.outputs[alias], use_tensor_content=False)
    return response


def _serialized_predict_response(result: PredictResult) -> bytes:
    """The response as bytes (see registration: grpc.aio then sends them as they are)."""
    return bytes(_predict_response(result).SerializeToString())


def time_remaining(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(float(remaining), 0.0)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(
        self, runner: InferenceRunner, models: ModelInfo, examples: ExampleApi | None = None
    ) -> None:
        self._runner = runner
        self._models = models
        self._examples = examples or ExampleApi(runner)

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            with observe_request("Predict", GRPC) as observed:
                observed.model_name = request.model_spec.name
                spec = model_request(request)
                declared = sum(tensor_proto_elements(t) for t in request.inputs.values())
                plan = PredictPlan(
                    lambda _signature: _decode_inputs(request.inputs),
                    spec.signature_name,
                    tuple(request.output_filter),
                    off_loop=declared > OFF_LOOP_ELEMENTS,
                )
                result = (await self._runner.run(spec, plan, time_remaining(context))).value
            if sum(a.size for a in result.outputs.values()) > OFF_LOOP_ELEMENTS:
                return await self._runner.off_loop(_serialized_predict_response, result)
            return _predict_response(result)
        except Exception as exc:
            await abort_with(context, exc)

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            with observe_request("Classify", GRPC) as observed:
                observed.model_name = request.model_spec.name
                spec = model_request(request)
                return await self._examples.classify(spec, request, time_remaining(context))
        except Exception as exc:
            await abort_with(context, exc)

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            with observe_request("Regress", GRPC) as observed:
                observed.model_name = request.model_spec.name
                spec = model_request(request)
                return await self._examples.regress(spec, request, time_remaining(context))
        except Exception as exc:
            await abort_with(context, exc)

    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            with observe_request("MultiInference", GRPC) as observed:
                # TF Serving looks the servable up by the first task's ModelSpec.
                if not request.tasks:
                    raise InvalidArgument("Missing ModelSpec")
                observed.model_name = request.tasks[0].model_spec.name
                spec = model_request(request.tasks[0])
                return await self._examples.multi_inference(spec, request, time_remaining(context))
        except Exception as exc:
            await abort_with(context, exc)

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            with observe_request("GetModelMetadata", GRPC) as observed:
                observed.model_name = request.model_spec.name
                return self._get_model_metadata(request)
        except Exception as exc:
            await abort_with(context, exc)

    def _get_model_metadata(self, request: Any) -> Any:
        spec = model_request(request)
        fields = list(request.metadata_field)
        if not fields:
            raise InvalidArgument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        unsupported = [f for f in fields if f != _SIGNATURE_DEF_FIELD]
        if unsupported:
            raise InvalidArgument(f"Metadata field {unsupported[0]} is not supported")
        model_spec, signature_map = self._models.metadata(spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.CopyFrom(model_spec)
        response.metadata[_SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response
