"""SIGTERM drain (requests in flight all complete) and logging to a real journald."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from support.notify_socket import NotifySocket
from support.paths import REPO_ROOT
from support.servingd_process import ServingdProcess
from support.slow_model import export_sleepy

pytestmark = pytest.mark.slow

SLEEP_MICROS = 2_000_000
IN_FLIGHT = 4


@pytest.fixture(scope="module")
def sleepy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sleepy")
    export_sleepy(base / "1")
    return base


def test_sigterm_lets_requests_in_flight_complete(sleepy: Path) -> None:
    notify = NotifySocket()
    server = ServingdProcess(
        ["--model_name=sleepy", f"--model_base_path={sleepy}", "--drain_grace_seconds=20"],
        env={**notify.env(), "WATCHDOG_USEC": "400000"},
    )
    try:
        server.start()
        server.wait_healthy()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "sleepy"
        request.inputs["micros"].CopyFrom(tf.make_tensor_proto([SLEEP_MICROS], dtype=tf.int64))
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            calls = [pool.submit(stub.Predict, request, timeout=30) for _ in range(IN_FLIGHT)]
            time.sleep(0.5)  # they are in the graph's sleep by now (each sleeps 2 s)
            assert not any(call.done() for call in calls)
            assert server.proc is not None
            server.proc.terminate()
            notify.wait_for(lambda m: "STOPPING" in m, timeout=10)
            replies = [call.result(timeout=30) for call in calls]
        assert notify.events().count("WATCHDOG") >= 2  # every WatchdogSec / 2
        assert [list(r.outputs["slept"].int64_val) for r in replies] == [[SLEEP_MICROS]] * 4
        assert server.proc.wait(timeout=30) == 0
        # After the drain began, new calls are refused (the listener is closed).
        with pytest.raises(grpc.RpcError):
            stub.Predict(request, timeout=2)
    finally:
        server.stop()
        notify.close()
    assert "stopping: draining in-flight requests for up to 20 s" in server.output()


def test_port_in_use_exits_1_with_one_line(testdata: Path) -> None:
    base = testdata / "saved_model_half_plus_two_cpu"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServingdProcess(["--model_name=hp2", f"--model_base_path={base}"], rest=False)
        server.flags[0] = f"--port={port}"
        server.start()
        assert server.proc is not None
        assert server.proc.wait(timeout=120) == 1
    assert f"cannot serve: Failed to bind to address 127.0.0.1:{port}" in server.output()
    assert "Traceback" not in server.output()
    server.stop()


JOURNAL_SCRIPT = textwrap.dedent(
    """
    set -e
    mount -t tmpfs tmpfs /run/systemd
    mount -t tmpfs tmpfs /run/log
    # keep a persistent journal on the host untouched
    if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
    mkdir -p /run/systemd/journal
    /lib/systemd/systemd-journald >/dev/null 2>&1 &
    JPID=$!
    trap 'kill $JPID; wait $JPID 2>/dev/null || true' EXIT
    for i in $(seq 1 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
    "$@"
    sleep 0.5
    journalctl -o json --no-pager --identifier=servingd > "$JOURNAL_OUT"
    """
)

DRIVER = textwrap.dedent(
    """
    import sys
    from support.servingd_process import ServingdProcess
    with ServingdProcess(sys.argv[1:]) as server:
        server.wait_healthy()
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="journald in a private mount namespace needs root")
@pytest.mark.skipif(
    not os.path.exists("/lib/systemd/systemd-journald") or not shutil.which("unshare"),
    reason="systemd-journald or unshare not installed",
)
def test_logs_to_journald_with_structured_fields(testdata: Path, tmp_path: Path) -> None:
    base = testdata / "saved_model_half_plus_two_cpu"
    out = tmp_path / "journal.json"
    env = {
        **os.environ,
        "JOURNAL_OUT": str(out),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")]),
    }
    subprocess.run(
        [
            "unshare", "-m", "--propagation", "private", "sh", "-c", JOURNAL_SCRIPT, "sh",
            sys.executable, "-c", DRIVER,
            "--model_name=hp2", f"--model_base_path={base}", "--log_target=journald",
        ],
        env=env,
        check=True,
        timeout=240,
    )  # fmt: skip
    entries = [json.loads(line) for line in out.read_text().splitlines()]
    assert entries, "servingd wrote nothing to the journal"
    available = [e for e in entries if e.get("SERVABLE_STATE") == "AVAILABLE"]
    assert len(available) == 1, entries
    entry = available[0]
    assert (entry["MODEL_NAME"], entry["MODEL_VERSION"]) == ("hp2", "123")
    assert entry["PRIORITY"] == "6"  # info
    assert entry["SYSLOG_IDENTIFIER"] == "servingd"
    assert entry["MESSAGE"] == "Servable {name: hp2 version: 123} is AVAILABLE"
    messages = [e["MESSAGE"] for e in entries]
    assert any(m.startswith("ready: 1 model, 1 version available") for m in messages)
    assert "stopped" in messages
