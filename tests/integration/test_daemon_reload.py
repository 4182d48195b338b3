"""SIGHUP reloads of servingd.yaml + models.d under load, with sd_notify and servingctl.

One daemon for the module, run from a servingd.yaml and models.d in a temp dir, reporting
to a NOTIFY_SOCKET of the test's own. Every reload is driven by `servingctl reload` (which
sends SIGHUP and waits for the outcome) while a client keeps calling: zero failures allowed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from servingd.cli.main import main as servingctl
from support.notify_socket import NotifySocket
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow


class Caller:
    """Calls Predict in a loop on its own thread; every failure is kept."""

    def __init__(self, channel: grpc.Channel, model: str, label: str = "") -> None:
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.request = predict_pb2.PredictRequest()
        self.request.model_spec.name = model
        if label:
            self.request.model_spec.version_label = label
        self.request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
        self.calls = 0
        self.failures: list[str] = []
        self.versions: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.stub.Predict(self.request, timeout=10)
                self.versions.append(reply.model_spec.version.value)
            except grpc.RpcError as exc:
                self.failures.append(f"{exc.code()}: {exc.details()}")
            self.calls += 1

    def wait_calls(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.calls < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.calls >= count, f"only {self.calls} calls in {timeout} s"

    def __enter__(self) -> Caller:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def etc(tmp_path_factory: pytest.TempPathFactory, testdata: Path) -> Path:
    etc = tmp_path_factory.mktemp("etc")
    (etc / "models.d").mkdir()
    (etc / "servingd.yaml").write_text(
        "models_dir: models.d\n"
        f"model_root: {testdata}\n"
        f"pid_file: {etc / 'servingd.pid'}\n"
        "logging: {level: info, target: stderr}\n"
        "drain_grace_seconds: 10\n"
    )
    (etc / "models.d/hp2.yaml").write_text("base_path: saved_model_half_plus_two_cpu\n")
    (etc / "models.d/two.yaml").write_text(
        "base_path: saved_model_half_plus_two_2_versions\n"
        "version_policy: all\n"
        "version_labels: {stable: 123}\n"
    )
    return etc


@pytest.fixture(scope="module")
def server(etc: Path, notify: NotifySocket) -> Iterator[ServingdProcess]:
    with ServingdProcess([f"--config={etc / 'servingd.yaml'}"], env=notify.env()) as process:
        process.wait_healthy()
        notify.wait_for(lambda m: m.get("READY") == "1", timeout=60)
        yield process


def ctl(server: ServingdProcess, etc: Path, *args: str) -> int:
    return servingctl(
        [
            f"--config={etc / 'servingd.yaml'}",
            f"--rest-url=http://127.0.0.1:{server.rest_port}",
            *args,
        ]
    )


def reload(server: ServingdProcess, etc: Path) -> int:
    return ctl(server, etc, "reload", "--timeout=120")


def test_ready_with_status_line(server: ServingdProcess, notify: NotifySocket) -> None:
    ready = notify.wait_for(lambda m: m.get("READY") == "1", timeout=5)
    assert ready["STATUS"] == "2 models, 3 versions available, 0 errors"


def test_add_then_remove_a_model_by_drop_in(
    server: ServingdProcess, etc: Path, notify: NotifySocket
) -> None:
    drop_in = etc / "models.d/three.yaml"
    with Caller(server.channel(), "hp2") as steady:
        drop_in.write_text("base_path: saved_model_half_plus_three\n")
        assert reload(server, etc) == 0
        with Caller(server.channel(), "three") as added:
            added.wait_calls(5)
        assert added.failures == [] and added.versions[-1] == 123
        drop_in.unlink()
        assert reload(server, etc) == 0
    assert steady.failures == [] and steady.calls > 0
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "three"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "3 versions available" in notify.snapshot()[-1].get("STATUS", "")


def test_change_a_label_under_load(server: ServingdProcess, etc: Path) -> None:
    drop_in = etc / "models.d/two.yaml"
    with Caller(server.channel(), "two", label="stable") as by_label:
        drop_in.write_text(drop_in.read_text().replace("stable: 123", "stable: 124"))
        assert reload(server, etc) == 0
        by_label.wait_calls(by_label.calls + 5)
    assert by_label.failures == []
    assert by_label.versions[0] == 123 and by_label.versions[-1] == 124


def test_broken_drop_in_is_refused_and_the_running_config_stays(
    server: ServingdProcess, etc: Path, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    broken = etc / "models.d/broken.yaml"
    with Caller(server.channel(), "hp2") as steady:
        broken.write_text("base_path: saved_model_half_plus_three\nversion_polcy: all\n")
        (etc / "models.d/hp2.yaml").unlink()  # refused whole: hp2 must stay served
        assert reload(server, etc) == 1
        assert f"{broken}:2: model: unknown key 'version_polcy'" in caplog.text
        status = notify.snapshot()[-1]
        assert status["READY"] == "1"
        assert status["STATUS"].startswith(f"config error: {broken}:2: ")
        assert "running config kept; 2 models, 3 versions available" in status["STATUS"]
        broken.unlink()
        (etc / "models.d/hp2.yaml").write_text("base_path: saved_model_half_plus_two_cpu\n")
        assert reload(server, etc) == 0
    assert steady.failures == [] and steady.calls > 0
    assert notify.snapshot()[-1]["STATUS"] == "2 models, 3 versions available, 0 errors"
    assert f"configuration refused, the running one stays: {broken}:2:" in server.output()


def test_log_level_applies_and_listener_change_waits_for_restart(
    server: ServingdProcess, etc: Path
) -> None:
    config = etc / "servingd.yaml"
    original = config.read_text()
    reloaded = "INFO servingd: configuration reloaded"
    try:
        config.write_text(
            original.replace("level: info", "level: warning") + "version_settle_seconds: 3\n"
        )
        before = server.output().count(reloaded)
        assert reload(server, etc) == 0
        output = server.output()
        assert output.count(reloaded) == before  # INFO is off now
        assert (
            "setting version_settle_s changed from 1.0 to 3.0" in output
            and "takes effect on restart" in output
        )
    finally:
        config.write_text(original)
        assert reload(server, etc) == 0
    assert server.output().count(reloaded) == before + 1


def test_limit_and_token_changes_wait_for_restart_and_secrets_stay_out_of_the_log(
    server: ServingdProcess, etc: Path
) -> None:
    config = etc / "servingd.yaml"
    original = config.read_text()
    token = etc / "admin.token"
    token.write_text("sekrit-token-value\n")
    token.chmod(0o600)
    try:
        config.write_text(
            original + "limits: {max_in_flight_requests: 7}\nadmin_token_file: admin.token\n"
        )
        assert reload(server, etc) == 0
        output = server.output()
        assert "setting max_in_flight changed from 1024 to 7: takes effect on restart" in output
        assert "setting admin_token changed: takes effect on restart" in output
        assert "sekrit-token-value" not in output
    finally:
        config.write_text(original)
        # No token is sent: the running (open) reload route stayed in force.
        assert reload(server, etc) == 0


def test_status_table(
    server: ServingdProcess, etc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(server, etc, "status") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["MODEL", "VERSION", "STATE", "LABELS", "ERROR"]
    assert ["hp2", "123", "AVAILABLE"] in [line.split() for line in lines]
    assert ["two", "124", "AVAILABLE", "stable"] in [line.split() for line in lines]


def test_predict_command(
    server: ServingdProcess, etc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl(server, etc, "predict", "hp2", "--json", '{"instances": [1.0, 5.0]}') == 0
    assert capsys.readouterr().out.strip() == '{"predictions": [2.5, 4.5]}'
    assert ctl(server, etc, "predict", "nope", "--json", '{"instances": [1.0]}') == 1


def test_notifications_in_order(server: ServingdProcess, notify: NotifySocket) -> None:
    # READY once, then each reload: RELOADING=1 ... READY=1 (with STATUS=).
    states = [
        "RELOADING" if "RELOADING" in m else "READY"
        for m in notify.snapshot()
        if "RELOADING" in m or "READY" in m
    ]
    assert states[0] == "READY"
    pairs = states[1:]
    assert len(pairs) >= 8 and pairs == ["RELOADING", "READY"] * (len(pairs) // 2)
    assert server.stop() == 0
    assert "STOPPING" in notify.events()
    assert notify.events().index("STOPPING") > len(states)
