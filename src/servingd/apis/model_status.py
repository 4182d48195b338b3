"""GetModelStatus answers, built once for both front ends (gRPC and REST's JSON of it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from servingd.apis.errors import TF_ERROR_CODE
from servingd.core.states import ManagerState, ServableState
from servingd.wire.tensorflow_serving.apis import get_model_status_pb2

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
