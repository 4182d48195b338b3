"""The one exception hierarchy of servingd.

Every layer raises these; `servingd.apis.errors` maps them to gRPC status codes and
HTTP statuses in one place. `code` is the canonical status name (as in grpc.StatusCode and
TF Serving's error::Code) so that core needs no gRPC import.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class: a failure with a canonical status code and a message for the caller."""

    code: str = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Cancelled(ServingError):
    code = "CANCELLED"


class InvalidArgument(ServingError):
    code = "INVALID_ARGUMENT"


class DeadlineExceeded(ServingError):
    code = "DEADLINE_EXCEEDED"


class NotFound(ServingError):
    code = "NOT_FOUND"


class AlreadyExists(ServingError):
    code = "ALREADY_EXISTS"


class PermissionDenied(ServingError):
    code = "PERMISSION_DENIED"


class ResourceExhausted(ServingError):
    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(ServingError):
    code = "FAILED_PRECONDITION"


class Aborted(ServingError):
    code = "ABORTED"


class OutOfRange(ServingError):
    code = "OUT_OF_RANGE"


class Unimplemented(ServingError):
    code = "UNIMPLEMENTED"


class Internal(ServingError):
    code = "INTERNAL"


class Unavailable(ServingError):
    code = "UNAVAILABLE"


class DataLoss(ServingError):
    code = "DATA_LOSS"


class Unauthenticated(ServingError):
    code = "UNAUTHENTICATED"


class Unknown(ServingError):
    code = "UNKNOWN"


# tensorflow/core/protobuf/error_codes.proto numbering: StatusProto.error_code in status
# answers, and tf.errors.OpError.error_code of TensorFlow's own errors.
TF_ERROR_CODE: dict[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

_CLASS_FOR_TF_CODE: dict[int, type[ServingError]] = {
    TF_ERROR_CODE[cls.code]: cls for cls in ServingError.__subclasses__()
}


def error_class_for_tf_code(code: int) -> type[ServingError]:
    """The class of a TensorFlow error code (OpError.error_code); Unknown when unknown."""
    return _CLASS_FOR_TF_CODE.get(code, Unknown)
