"""The REST API fuzzed from its own OpenAPI description (docs/openapi.yaml) by schemathesis.

A real daemon serves the TF1 half_plus_two (whose signatures include predict,
classify and regress) with Prometheus metrics on TF Serving's default path; schemathesis
generates valid and invalid requests for every operation of the spec (examples, coverage
and fuzzing phases) and checks every answer: never a 5xx, status codes, content types,
headers and bodies as the spec declares them, invalid data refused. The daemon must still
be running and serving afterwards.

Not checked, on purpose: `positive_data_acceptance` (a schema-valid model name that is not
configured is rightly 404) and `unsupported_method` (TF Serving answers an unknown method
on /v1/models/... with 400 "Malformed request", which compatible clients rely on).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from reliability.conftest import SOAK, soak_count
from support.paths import REPO_ROOT
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

SPEC = REPO_ROOT / "docs" / "openapi.yaml"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)


def test_rest_api_fuzzed_from_its_openapi_description(
    testdata: Path, tmp_path: Path, figure: Callable[..., str]
) -> None:
    pytest.importorskip("schemathesis", reason="schemathesis is in requirements/dev.txt")
    examples = soak_count(25, 300)
    seed = random.randrange(2**31) if SOAK else 20261121  # fixed in make test: reproducible
    report = tmp_path / "schemathesis.json"
    with ServingdProcess(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={testdata / 'saved_model_half_plus_two_cpu'}",
            f"--monitoring_config_file={testdata / 'monitoring_config.txt'}",
        ]
    ) as server:
        server.wait_healthy()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                str(SPEC),
                f"--url=http://127.0.0.1:{server.rest_port}",
                f"--max-examples={examples}",
                f"--seed={seed}",
                f"--checks={','.join(CHECKS)}",
                "--workers=1",  # two cores; and schemathesis' own threads are less flaky
                "--request-timeout=30",
                "--report=json",
                f"--report-json-path={report}",
            ],
            capture_output=True,
            text=True,
            timeout=soak_count(280, 1800),
            cwd=tmp_path,
        )
        server.assert_running()  # no crash
        # ... and still serving after thousands of hostile requests.
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
        reply = prediction_service_pb2_grpc.PredictionServiceStub(server.channel()).Predict(
            request, timeout=30
        )
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [2.5, 3.0])
        log = server.output()
        errors_in_log = log.count("Traceback")
    result = json.loads(report.read_text())
    cases = result["test_cases"]
    failures = sum(int(f["count"]) for f in result["failures"])
    server_errors = sum(int(f["count"]) for f in result["failures"] if f["code"] == "ST101")
    # "Runtime Error" is schemathesis failing inside itself (not a request that was made);
    # anything else (a network error: refused, reset, timed out) is the server's.
    tool_errors = sum(int(e["count"]) for e in result["errors"] if e["title"] == "Runtime Error")
    network_errors = sum(int(e["count"]) for e in result["errors"]) - tool_errors
    figure(
        "rest_fuzz",
        cases=cases["generated"],
        operations=result["operations"]["tested"],
        examples=examples,
        seed=seed,
        failures=failures + network_errors + errors_in_log,
        server_errors=server_errors,
        network_errors=network_errors,
        tool_errors=tool_errors,
    )
    assert result["operations"]["tested"] == result["operations"]["total"], result["operations"]
    assert cases["generated"] > 0
    assert failures == 0 and network_errors == 0, run.stdout[-20000:]
    first = log.find("Traceback")
    assert errors_in_log == 0, (
        f"an exception reached the daemon's log:\n{log[first - 300 : first + 3000]}"
    )
