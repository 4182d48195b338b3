"""The one place where servingd errors become gRPC status codes and HTTP statuses.

The HTTP table is TF Serving's (model_servers/http_server.cc, ToHTTPStatusCode).
"""

from __future__ import annotations

import logging

import grpc

from servingd.apis.log_budget import LogBudget
from servingd.core.errors import Internal, ServingError

log = logging.getLogger(__name__)

_HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# Echoed client input (names, values) in an error message is cut to this many characters.
ECHO_LIMIT = 200
# An error message as sent is cut to this many characters: it travels in gRPC's trailing
# metadata, which clients cap at 16 KiB (UTF-8: up to 4 bytes a character), and may echo a
# 100 KB model name or 10,000 input names.
MESSAGE_LIMIT = 2000


def truncated(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text`, cut to `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


# Unexpected errors are logged with their traceback, within this budget (a client that
# found one can repeat it at will).
UNEXPECTED_LOG_BUDGET = LogBudget()


def as_serving_error(exc: BaseException) -> ServingError:
    """Any exception as a ServingError; unexpected ones are logged with their traceback."""
    if isinstance(exc, ServingError):
        return exc
    log_it, left_out = UNEXPECTED_LOG_BUDGET.take()
    if log_it:
        log.error(
            "unexpected error while serving a request%s",
            UNEXPECTED_LOG_BUDGET.summary(left_out),
            exc_info=exc,
        )
    return Internal(truncated(f"{type(exc).__name__}: {exc}", MESSAGE_LIMIT))


def public_message(error: ServingError) -> str:
    """The error's message as a client gets it (cut to MESSAGE_LIMIT)."""
    return truncated(error.message, MESSAGE_LIMIT)


def grpc_status(error: ServingError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)


def http_status(error: ServingError) -> int:
    return _HTTP_STATUS.get(error.code, 500)
