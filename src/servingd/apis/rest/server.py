"""TF Serving's REST API (`/v1/models/...`) plus health endpoints, on aiohttp.

Routes (TF Serving's, g3doc/api_rest.md):
    GET  /v1/models/NAME[/versions/N | /labels/L]             model status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata    model metadata
    POST /v1/models/NAME[/versions/N | /labels/L]:predict     (and :classify, :regress)
servingd's own:
    GET  /v1/models              every configured model and its versions
    GET  /healthz                liveness: the process answers
    GET  /readyz                 readiness: every configured model has a version AVAILABLE
    GET  /v1/openapi.yaml        this API's OpenAPI description (docs/openapi.yaml)
    GET  /v1/servingd/reload     the daemon's last configuration reload (SIGHUP):
                                 {"generation": N, "state": "idle"|"reloading",
                                  "result": "ok"|"refused"|"applied_with_errors"|null,
                                  "message": "...", "started": t, "finished": t,
                                  "pid": the daemon's pid}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Middleware
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from servingd.apis.admission import InFlightLimiter, check_arrays
from servingd.apis.auth import BearerToken
from servingd.apis.errors import as_serving_error, http_status, public_message
from servingd.apis.inference import (
    OFF_LOOP_BYTES,
    OFF_LOOP_ELEMENTS,
    InferenceRunner,
    ModelRequest,
    PredictPlan,
    PredictResult,
)
from servingd.apis.model_info import ModelInfo, status_response
from servingd.apis.request_metrics import REST, observe_request
from servingd.apis.rest import json_tensors
from servingd.apis.rest.bad_requests import install_bad_request_filter
from servingd.apis.rest.examples_json import rest_methods
from servingd.apis.rest.middleware import admission, bearer_auth, json_errors, read_body
from servingd.apis.rest.openapi import CONTENT_TYPE as OPENAPI_TYPE
from servingd.apis.rest.openapi import OPENAPI_ROUTE, load_openapi_document
from servingd.apis.rest.predict_body import PredictBody
from servingd.apis.rest.tls import server_ssl_context
from servingd.apis.tf_example import ExampleApi
from servingd.apis.tls import TlsSettings
from servingd.core.errors import InvalidArgument, NotFound, ServingError
from servingd.core.metrics import REGISTRY

if TYPE_CHECKING:
    from servingd.servables.saved_model import Signature

log = logging.getLogger(__name__)

# As TF Serving's HttpRestApiHandler::kPathRegex, case-insensitive like it.
_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<method>predict|classify|regress)|/(?P<metadata>metadata))?",
    re.IGNORECASE,
)
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class RestOptions:
    # The server's settings, with no defaults here: theirs live in config/schema.py.
    port: int
    bind_address: str
    timeout_ms: int
    enable_cors: bool
    max_body_bytes: int
    # --monitoring_config_file's prometheus_config.path; None: no metrics endpoint.
    prometheus_path: str | None
    check_method_name: bool  # --enable_signature_method_name_check
    # TLS (optionally mutual) on the REST port; None: plain HTTP.
    tls: TlsSettings | None
    # In-flight caps and size limits for inference routes (None: no admission control).
    limiter: InFlightLimiter | None = None
    # Bearer token for state-changing routes (None: open).
    admin_token: BearerToken | None = None
    # Idle keep-alive connections are closed after this long.
    keepalive_timeout_s: float = 75.0


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=json_tensors.dumps(payload), status=status, content_type=JSON_TYPE)


def error_response(exc: BaseException) -> web.Response:
    error = as_serving_error(exc)
    return json_response({"error": public_message(error)}, http_status(error))


def _proto_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class RestApi:
    """Request handlers; `readiness` tells whether every configured model is up."""

    def __init__(
        self,
        runner: InferenceRunner,
        models: ModelInfo,
        options: RestOptions,
        model_names: Callable[[], list[str]],
        extra_methods: Mapping[str, Callable[[ModelRequest, Any], Awaitable[Any]]] | None = None,
        reload_status: Callable[[], Mapping[str, Any]] | None = None,
        source_status: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
    ) -> None:
        """`source_status()`: per model, where its versions come from and whether that
        works now (shown as "source" in GET /v1/models)."""
        self._reload_status = reload_status
        self._source_status = source_status
        self._runner = runner
        self._models = models
        self.options = options
        self._model_names = model_names
        self._openapi = load_openapi_document()
        # :classify and :regress are TF Serving's own routes, always there; extra_methods
        # may add (or replace) methods, e.g. for tests or future APIs.
        self._extra_methods = {
            **rest_methods(
                ExampleApi(runner, check_method_name=options.check_method_name),
                options.timeout_ms / 1000.0,
            ),
            **(extra_methods or {}),
        }

    def routes(self) -> list[web.RouteDef]:
        routes = []
        if self.options.prometheus_path:
            routes.append(web.get(self.options.prometheus_path, self.prometheus))
        return [
            *routes,
            web.get("/healthz", self.liveness),
            web.get("/readyz", self.readiness),
            web.get("/v1/models", self.list_models),
            web.get("/v1/servingd/reload", self.reload_state),
            web.get(OPENAPI_ROUTE, self.openapi),
            web.route("*", "/v1/models/{tail:.*}", self.dispatch),
        ]

    async def prometheus(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def liveness(self, _request: web.Request) -> web.Response:
        return json_response({"status": "alive"})

    def ready_models(self) -> dict[str, bool]:
        status = self._models.status
        return {name: status.is_ready(name) for name in self._model_names()}

    async def readiness(self, _request: web.Request) -> web.Response:
        status = self._models.status
        reasons = {name: status.not_ready_reason(name) for name in self._model_names()}
        models = {name: reason is None for name, reason in reasons.items()}
        not_serving = {name: reason for name, reason in reasons.items() if reason is not None}
        body = {"ready": not not_serving, "models": models, "not_serving": not_serving}
        return json_response(body, 503 if not_serving else 200)

    async def openapi(self, _request: web.Request) -> web.Response:
        if self._openapi is None:
            return json_response(
                {"error": "the OpenAPI description (docs/openapi.yaml) is not installed"}, 404
            )
        return web.Response(body=self._openapi, content_type=OPENAPI_TYPE)

    async def reload_state(self, _request: web.Request) -> web.Response:
        if self._reload_status is None:
            return json_response({"error": "reload status is not available here"}, 404)
        return json_response(dict(self._reload_status()))

    async def list_models(self, _request: web.Request) -> web.Response:
        view = self._models.status
        sources = self._source_status() if self._source_status is not None else {}
        models = []
        for name in sorted(self._model_names()):
            try:
                states = view.version_states(name)
            except NotFound:
                states = []
            status = status_response(states)
            entry = {"name": name, **_proto_json(status), "labels": view.labels.get(name)}
            error = view.model_error(name)
            if error:  # e.g. a base path that does not exist
                entry["error"] = error
            if name in sources:
                entry["source"] = dict(sources[name])
            models.append(entry)
        return json_response({"models": models})

    async def dispatch(self, request: web.Request) -> web.Response:
        try:
            match = _PATH.fullmatch(request.path)
            if match is None:
                raise InvalidArgument(f"Malformed request: {request.method} {request.path}")
            spec = ModelRequest(
                name=match["name"],
                version=_version(match["version"]) if match["version"] else None,
                label=match["label"],
            )
            method = (match["method"] or "").lower()
            if request.method == "GET" and not method:
                if match["metadata"]:
                    return await self.metadata(spec)
                return await self.status(spec)
            if request.method == "POST" and method == "predict":
                with observe_request("Predict", REST) as observed:
                    observed.model_name = spec.name
                    return await self.predict(request, spec)
            if request.method == "POST" and method in self._extra_methods:
                with observe_request(method.capitalize(), REST) as observed:
                    observed.model_name = spec.name
                    raw = await read_body(request)
                    body = (
                        await self._runner.off_loop(json_tensors.loads, raw)
                        if len(raw) > OFF_LOOP_BYTES
                        else json_tensors.loads(raw)
                    )
                    return json_response(await self._extra_methods[method](spec, body))
            raise InvalidArgument(f"Malformed request: {request.method} {request.path}")
        except ServingError as exc:
            return error_response(exc)
        except web.HTTPException:
            raise
        except UnicodeEncodeError:  # "\ud800": valid JSON, but no UTF-8 string
            return error_response(
                InvalidArgument("JSON string is not valid Unicode (it holds a lone surrogate)")
            )
        except Exception as exc:
            return error_response(exc)

    async def status(self, spec: ModelRequest) -> web.Response:
        return json_response(_proto_json(self._models.model_status(spec)))

    async def metadata(self, spec: ModelRequest) -> web.Response:
        model_spec, signature_map = self._models.metadata(spec)
        return json_response(
            {
                "model_spec": _proto_json(model_spec),
                "metadata": {"signature_def": _proto_json(signature_map)},
            }
        )

    async def predict(self, request: web.Request, spec: ModelRequest) -> web.Response:
        raw = await read_body(request)
        large = len(raw) > OFF_LOOP_BYTES
        body = await self._runner.off_loop(PredictBody, raw) if large else PredictBody(raw)
        spec = ModelRequest(spec.name, spec.version, spec.label, body.signature_name)
        limiter = self.options.limiter

        def decode(signature: Signature) -> dict[str, np.ndarray]:
            inputs = body.decode(_input_dtypes(signature))
            if limiter is not None:
                check_arrays(inputs, limiter.options.max_tensor_elements)
            return inputs

        plan = PredictPlan(decode, spec.signature_name, off_loop=large)
        result = (await self._runner.run(spec, plan, self.options.timeout_ms / 1000.0)).value
        if sum(a.size for a in result.outputs.values()) > OFF_LOOP_ELEMENTS:
            return await self._runner.off_loop(_predict_response, result, body.row_format)
        return _predict_response(result, body.row_format)


def _predict_response(result: PredictResult, row_format: bool) -> web.Response:
    return json_response(json_tensors.encode_predict_response(result.outputs, row_format))


def _input_dtypes(signature: Signature) -> dict[str, np.dtype[Any]]:
    dtypes = {}
    for alias, spec in signature.inputs.items():
        if spec.dtype is None:
            raise InvalidArgument(
                f"Input '{alias}' has type {spec.dtype_name}, which JSON cannot carry"
            )
        dtypes[alias] = spec.dtype
    return dtypes


def _version(text: str) -> int:
    """A URL's version: an int64, as TF Serving's handler parses it (else INVALID_ARGUMENT)."""
    version = int(text)
    if version >= 2**63:
        raise InvalidArgument(f"Failed to convert version: {text} to numeric.")
    return version


@web.middleware
async def _cors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
    return response


class RestFrontEnd:
    """The aiohttp listener. Create and use on the event loop."""

    def __init__(self, options: RestOptions, api: RestApi, drain_grace_s: float) -> None:
        self.options = options
        install_bad_request_filter()
        middlewares: list[Middleware] = [json_errors]
        if options.enable_cors:
            middlewares.append(_cors)
        if options.admin_token is not None:
            middlewares.append(bearer_auth(options.admin_token))
        if options.limiter is not None:
            middlewares.append(
                admission(options.limiter, options.timeout_ms / 1000.0, options.max_body_bytes)
            )
        self.app = web.Application(client_max_size=options.max_body_bytes, middlewares=middlewares)
        self.app.add_routes(api.routes())
        # cleanup() waits up to shutdown_timeout for in-flight handlers: the drain.
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=drain_grace_s,
            keepalive_timeout=options.keepalive_timeout_s,
            # A body left unread (refused for its size, a full cap, a slow sender) is not
            # drained: aiohttp would otherwise read it for up to 10 s more, holding the
            # connection (and logging a body that does not decode as an unhandled error).
            lingering_time=0,
            # A client that hangs up cancels its handler: its in-flight slot comes back at
            # once (a queued batch task leaves its queue; a TensorFlow run that started
            # goes on to its deadline, which the REST timeout bounds).
            handler_cancellation=True,
        )

    async def start(self) -> None:
        await self._runner.setup()
        tls = self.options.tls
        site = web.TCPSite(
            self._runner,
            self.options.bind_address,
            self.options.port,
            reuse_address=True,
            ssl_context=server_ssl_context(tls) if tls is not None else None,
        )
        await site.start()
        log.info(
            "REST API listening on %s://%s:%d",
            "https" if tls is not None else "http",
            self.options.bind_address,
            self.options.port,
        )

    async def stop(self) -> None:
        await self._runner.cleanup()
