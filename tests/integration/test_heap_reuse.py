"""The daemon keeps freed heap memory: large REST requests stop faulting their buffers'
pages in again (daemon.heap_reuse)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from support.proc_threads import minor_faults
from support.servingd_process import ServingdProcess

ROUNDS = 20
VALUES = 100_000
# half_plus_two over 100,000 numbers: a ~1 MB body in and a ~1 MB body out, ~700 pages of
# buffers per request (body, parse, tensors, reply).
BODY = json.dumps({"instances": [i * 0.37 for i in range(VALUES)]}).encode()
# Seen per request: ~65 with the heap kept; 124-800 with glibc's defaults (it varies with
# the allocation history: glibc's thresholds move as it frees).
MAX_FAULTS_PER_REQUEST = 200


def test_large_requests_reuse_freed_memory(tf_serving_testdata: Path) -> None:
    model = tf_serving_testdata / "saved_model_half_plus_two_cpu"
    with ServingdProcess(["--model_name=hp2", f"--model_base_path={model}"]) as server:
        server.wait_healthy()
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/hp2:predict"

        def predict() -> None:
            request = urllib.request.Request(url, data=BODY, method="POST")
            with urllib.request.urlopen(request, timeout=60) as reply:
                assert len(json.loads(reply.read())["predictions"]) == VALUES

        for _ in range(3):  # the heap grows to the working set first
            predict()
        before = minor_faults(server.proc.pid)
        for _ in range(ROUNDS):
            predict()
        faults = (minor_faults(server.proc.pid) - before) / ROUNDS
    assert faults < MAX_FAULTS_PER_REQUEST, faults
