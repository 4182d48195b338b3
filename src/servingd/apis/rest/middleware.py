"""aiohttp middlewares of the REST front end: JSON errors, auth, admission control.

Kept apart from the handlers so that every refusal (too large, too slow, too many, not
allowed) has the same shape as TF Serving's errors: ``{"error": "..."}`` with the status
from ``servingd.apis.errors``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestPayloadError

from servingd.apis.admission import InFlightLimiter
from servingd.apis.auth import BearerToken
from servingd.apis.errors import as_serving_error, http_status, public_message, truncated
from servingd.apis.rest import json_tensors
from servingd.core.errors import ServingError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Inference routes: POST /v1/models/NAME[...]:predict|classify|regress.
_INFERENCE = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/[^:]*)?:[a-z]+", re.IGNORECASE)
_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Where the admission middleware leaves the body it read for the handler.
_BODY = web.RequestKey("servingd_body", bytes)


def _json_error(message: str, status: int) -> web.Response:
    return web.Response(
        body=json_tensors.dumps({"error": message}), status=status, content_type="application/json"
    )


def _serving_error(exc: ServingError) -> web.Response:
    return _json_error(public_message(exc), http_status(as_serving_error(exc)))


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (413 body too large, 404, 405, ...) as ``{"error": ...}``."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            message = f"Request body too large ({exc.text}); see --rest_api_max_body_bytes"
        else:
            message = f"{exc.reason}: {request.method} {request.path}"
        response = _json_error(message, exc.status)
        if "Allow" in exc.headers:  # a 405 must say what is allowed (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def is_state_changing(request: web.Request) -> bool:
    """Everything but reads and inference (which computes, but changes nothing)."""
    if request.path.rstrip("/").endswith("/reload"):
        return True
    if request.method in _READ_ONLY_METHODS:
        return False
    return _INFERENCE.fullmatch(request.path) is None


def bearer_auth(token: BearerToken) -> Middleware:
    """Requires the bearer token on state-changing routes (see is_state_changing)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_state_changing(request):
            try:
                token.check(request.headers.get("Authorization"))
            except ServingError as exc:
                response = _serving_error(exc)
                response.headers["WWW-Authenticate"] = 'Bearer realm="servingd"'
                return response
        return await handler(request)

    return middleware


def admission(limiter: InFlightLimiter, body_timeout_s: float, max_body_bytes: int) -> Middleware:
    """Size limit, in-flight caps and a read deadline for inference routes, in that order,
    all before the body is buffered.

    A declared Content-Length over `max_body_bytes` is 413 at once; a request over a cap is
    503 at once; either way the body is not read and the connection is closed. An admitted
    request's body is then read, holding its slot, within `body_timeout_s` (408 and the
    connection closed for a client that sends too slowly or never finishes): so no more
    bodies than the in-flight cap are ever being buffered. A body whose Content-Encoding
    (gzip, deflate, br: aiohttp decompresses them, up to the same size limit) does not
    decode is 400.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = _INFERENCE.fullmatch(request.path) if request.method == "POST" else None
        if match is None:
            return await handler(request)
        declared = request.content_length
        if max_body_bytes and declared is not None and declared > max_body_bytes:
            return _closing(
                _json_error(
                    f"Request body too large: Content-Length {declared} is over the limit of "
                    f"{max_body_bytes} bytes (--rest_api_max_body_bytes)",
                    413,
                )
            )
        try:
            release = limiter.acquire(match["name"])
        except ServingError as exc:
            response = _serving_error(exc)
            response.headers["Retry-After"] = "1"
            return _closing(response)
        try:
            try:
                async with asyncio.timeout(body_timeout_s):
                    request[_BODY] = await _read_body(request)
            except TimeoutError:
                message = f"Request body not received within {body_timeout_s:g} s"
                return _closing(_json_error(message, 408))
            except (PayloadEncodingError, RequestPayloadError) as exc:
                # A Content-Encoding that does not decode, a broken chunked body, ...
                encoding = request.headers.get("Content-Encoding", "identity")
                message = f"Request body could not be read (Content-Encoding: {encoding}): "
                return _closing(_json_error(message + truncated(" ".join(str(exc).split())), 400))
            except ConnectionError as exc:  # the client went away mid-body: nobody to answer
                # aiohttp keeps this exception on the request's payload; its traceback would
                # keep the frame of the read, and the part of the body read so far, alive.
                exc.__traceback__ = None
                return _closing(_json_error("Client closed the connection", 499))
            return await handler(request)
        finally:
            release()

    return middleware


async def _read_body(request: web.Request) -> bytes:
    """The whole body. With a Content-Length (and no Content-Encoding) it goes into one
    buffer of that size as it arrives: an upload held short of its end costs its length,
    not aiohttp's growing buffer and its chunks."""
    length = request.content_length
    if length is None or "Content-Encoding" in request.headers:
        return await request.read()
    buffer = bytearray(length)
    view = memoryview(buffer)
    received = 0
    while received < length:
        chunk = await request.content.readany()
        if not chunk:
            raise PayloadEncodingError(f"body ended after {received} of {length} bytes")
        view[received : received + len(chunk)] = chunk
        received += len(chunk)
    view.release()
    return bytes(buffer)


async def read_body(request: web.Request) -> bytes:
    """The body of a request: as the admission middleware read it, else read now."""
    body = request.get(_BODY)
    return body if body is not None else await request.read()


def _closing(response: web.Response) -> web.Response:
    """`response`, after which the connection closes: a body left unread is not drained."""
    response.force_close()
    return response
