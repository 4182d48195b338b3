"""TF Serving's REST API against saved_model_half_plus_two_cpu, over real HTTP."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.servingd_process import ServingdProcess


@pytest.fixture(scope="module")
def server(testdata: Path) -> Iterator[ServingdProcess]:
    base_path = testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess(
        ["--model_name=half_plus_two", f"--model_base_path={base_path}"]
    ) as process:
        process.wait_healthy()
        yield process


def call(
    server: ServingdProcess,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}{path}",
        data=data,
        headers=headers or {},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_predict_row_format(server: ServingdProcess) -> None:
    status, body = call(server, "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]})
    assert status == 200, body
    assert body == {"predictions": [2.5, 3.0, 4.5]}


def test_predict_columnar_format_with_version(server: ServingdProcess) -> None:
    status, body = call(
        server, "/v1/models/half_plus_two/versions/123:predict", {"inputs": {"x": [[1.0], [2.0]]}}
    )
    assert status == 200, body
    assert body == {"outputs": [[2.5], [3.0]]}


def test_predict_accepts_gzip_bodies(server: ServingdProcess) -> None:
    raw = gzip.compress(json.dumps({"instances": [[1.0], [5.0]]}).encode())
    status, body = call(
        server, "/v1/models/half_plus_two:predict", raw=raw, headers={"Content-Encoding": "gzip"}
    )
    assert status == 200, body
    assert body == {"predictions": [[2.5], [4.5]]}


def test_predict_accepts_nan_and_returns_it(server: ServingdProcess) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two:predict",
        data=b'{"instances": [NaN, Infinity]}',
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        text = reply.read().decode()
    assert text.replace(" ", "") == '{"predictions":[NaN,Infinity]}'


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/models/nope:predict", {"instances": [1.0]}, 404, "nope"),
        ("/v1/models/half_plus_two/versions/9:predict", {"instances": [1.0]}, 404, "9"),
        (
            "/v1/models/half_plus_two/labels/x:predict",
            {"instances": [1.0]},
            400,
            "Unrecognized servable version label: x",
        ),
        ("/v1/models/half_plus_two:predict", {"instances": ["a"]}, 400, "x"),
        ("/v1/models/half_plus_two:predict", {"foo": 1}, 400, "Missing 'inputs' or 'instances'"),
        (
            "/v1/models/half_plus_two:predict",
            {"instances": [1.0], "signature_name": 3},
            400,
            "'signature_name' key must be a string value.",
        ),
        (
            "/v1/models/half_plus_two:predict",
            {"instances": [1.0], "signature_name": "nope"},
            400,
            "nope",
        ),
        ("/v1/models/half_plus_two:predict", {"inputs": {"z": [1.0]}}, 400, "z"),
        # A version beyond int64 (found by the schemathesis run: it was a 500 on :classify).
        *(
            (
                f"/v1/models/half_plus_two/versions/{2**63}{suffix}",
                body,
                400,
                f"Failed to convert version: {2**63} to numeric.",
            )
            for suffix, body in (
                (":predict", {"instances": [1.0]}),
                (":classify", {"examples": [{"x": 1.0}]}),
                (":regress", {"examples": [{"x": 1.0}]}),
                ("", None),
                ("/metadata", None),
            )
        ),
    ],
)
def test_bad_requests_get_tf_serving_errors(
    server: ServingdProcess, path: str, body: Any, status: int, fragment: str
) -> None:
    got_status, got = call(server, path, body)
    assert got_status == status, got
    assert set(got) == {"error"} and fragment in got["error"]


def test_malformed_json_is_400(server: ServingdProcess) -> None:
    status, body = call(server, "/v1/models/half_plus_two:predict", raw=b"{not json")
    assert status == 400 and "error" in body


def test_status(server: ServingdProcess) -> None:
    status, body = call(server, "/v1/models/half_plus_two")
    assert status == 200
    assert body == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert call(server, "/v1/models/half_plus_two/versions/123")[0] == 200
    missing_status, missing = call(server, "/v1/models/nope")
    assert missing_status == 404 and "nope" in missing["error"]


def test_metadata_matches_tf_serving(server: ServingdProcess, testdata: Path) -> None:
    expected = json.loads((testdata / "half_plus_two_model_metadata.json").read_text())
    status, body = call(server, "/v1/models/half_plus_two/metadata")
    assert status == 200, body
    assert body["model_spec"] == {**expected["model_spec"], "name": "half_plus_two"}
    assert body["metadata"] == expected["metadata"]


def test_health_and_model_list(server: ServingdProcess) -> None:
    assert call(server, "/healthz") == (200, {"status": "alive"})
    assert call(server, "/readyz") == (
        200,
        {"ready": True, "models": {"half_plus_two": True}, "not_serving": {}},
    )
    status, body = call(server, "/v1/models")
    assert status == 200
    assert [m["name"] for m in body["models"]] == ["half_plus_two"]
    assert body["models"][0]["model_version_status"][0]["state"] == "AVAILABLE"


def test_grpc_metadata_matches_tf_serving(server: ServingdProcess, testdata: Path) -> None:
    from google.protobuf import json_format
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        prediction_service_pb2_grpc,
    )

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    reply = stub.GetModelMetadata(request, timeout=30)
    assert reply.model_spec.name == "half_plus_two"
    assert reply.model_spec.version.value == 123
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(signatures)
    expected = json.loads((testdata / "half_plus_two_model_metadata.json").read_text())
    got = json_format.MessageToDict(
        signatures, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert got == expected["metadata"]["signature_def"]


def test_cors_headers_only_when_enabled(server: ServingdProcess, testdata: Path) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert "Access-Control-Allow-Origin" not in reply.headers
    base = testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={base}",
            "--rest_api_enable_cors_support",
        ]
    ) as cors:
        cors.wait_healthy()
        url = f"http://127.0.0.1:{cors.rest_port}/v1/models/half_plus_two:predict"
        preflight = urllib.request.Request(
            url,
            method="OPTIONS",
            headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
        )
        with urllib.request.urlopen(preflight, timeout=10) as reply:
            assert reply.status in (200, 204)
            assert reply.headers["Access-Control-Allow-Origin"] == "*"
            assert "POST" in reply.headers["Access-Control-Allow-Methods"]
        status, body = call(cors, "/v1/models/half_plus_two:predict", {"instances": [1.0]})
        assert status == 200 and body == {"predictions": [2.5]}
