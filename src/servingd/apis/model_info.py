"""GetModelStatus and GetModelMetadata answers, built once for both front ends.

gRPC returns the messages; REST writes their JSON (TF Serving's REST API is the JSON of
the same messages). Status comes from core's ModelStatus (state events, labels, source
errors); metadata from the servable, under a lease.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from servingd.apis.inference import ModelRequest
from servingd.core.errors import TF_ERROR_CODE
from servingd.core.lookup import ServableLookup
from servingd.core.model_status import ModelStatus
from servingd.core.states import ManagerState, ServableState
from servingd.wire.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)

_STATE_ENUM = {
    ManagerState.START: get_model_status_pb2.ModelVersionStatus.START,
    ManagerState.LOADING: get_model_status_pb2.ModelVersionStatus.LOADING,
    ManagerState.AVAILABLE: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    ManagerState.UNLOADING: get_model_status_pb2.ModelVersionStatus.UNLOADING,
    ManagerState.END: get_model_status_pb2.ModelVersionStatus.END,
}


def fill_version_status(status: Any, state: ServableState) -> None:
    status.version = state.id.version
    status.state = _STATE_ENUM[state.manager_state]
    status.status.SetInParent()  # TF Serving always sets it: error_code OK when healthy
    if state.error is not None:
        status.status.error_code = TF_ERROR_CODE.get(state.error.code, 2)
        status.status.error_message = state.error.message


def status_response(states: Iterable[ServableState]) -> Any:
    """A GetModelStatusResponse listing `states` in the order given."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for state in states:
        fill_version_status(response.model_version_status.add(), state)
    return response


class ModelInfo:
    """What the front ends answer about models, as opposed to running them."""

    def __init__(self, lookup: ServableLookup, status: ModelStatus) -> None:
        self._lookup = lookup
        # Readiness, GET /v1/models and health read it directly.
        self.status = status

    def model_status(self, spec: ModelRequest) -> Any:
        """GetModelStatusResponse for the spec's model (one version when it names one)."""
        return status_response(self.status.version_states(spec.name, spec.version, spec.label))

    def metadata(self, spec: ModelRequest) -> tuple[Any, Any]:
        """(ModelSpec of the version that answered, its SignatureDefMap)."""
        with self._lookup.handle(spec.name, spec.version, spec.label) as handle:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in handle.servable.signature_def_map().items():
                signature_map.signature_def[key].CopyFrom(signature)
            model_spec = model_pb2.ModelSpec(name=handle.id.name)
            model_spec.version.value = handle.id.version
        return model_spec, signature_map
