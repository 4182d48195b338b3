"""The daemon serving an s3:// base path from a real S3 API (moto's server on loopback).

One daemon for the module, configured as a sysadmin would: servingd.yaml's s3: section, a
root-only credentials file, a models.d drop-in with `base_path: s3://models/hp2`. The
tests run in order: publish, publish under load, the store going away and coming back,
a restart while it is away.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from servingd.cli.main import main as servingctl
from support.predict_load import PredictLoad
from support.s3_server import MotoServer, upload_version, write_daemon_files
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

BUCKET = "models"
WAIT_S = 120.0


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hp2(testdata: Path) -> Path:
    return testdata / "saved_model_half_plus_two_cpu" / "00000123"


@pytest.fixture(scope="module")
def etc(tmp_path_factory: pytest.TempPathFactory, s3: MotoServer) -> Path:
    etc = tmp_path_factory.mktemp("etc")
    (etc / "models.d").mkdir()
    write_daemon_files(etc, s3)
    (etc / "servingd.yaml").write_text(
        "models_dir: models.d\n"
        "logging: {level: info, target: stderr}\n"
        "drain_grace_seconds: 5\n"
        "monitoring_config_file: monitoring.config\n"
        "s3:\n"
        f"  endpoint: {s3.endpoint}\n"
        "  region: us-east-1\n"
        "  poll_interval_seconds: 0.5\n"
        "  settle_seconds: 1\n"
        f"  cache_dir: {etc / 'cache'}\n"
        "  credentials_file: s3-credentials\n"
    )
    (etc / "models.d/hp2.yaml").write_text(f"base_path: s3://{BUCKET}/hp2\n")
    return etc


@pytest.fixture(scope="module")
def daemon(etc: Path, s3: MotoServer, hp2: Path) -> Iterator[list[ServingdProcess]]:
    """The running daemon, in a list: the restart test replaces it."""
    upload_version(s3.client(), BUCKET, "hp2/1", hp2, manifest=True)
    process = ServingdProcess([f"--config={etc / 'servingd.yaml'}"]).start()
    running = [process]
    yield running
    for p in running:
        p.stop()


def status(server: ServingdProcess, etc: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = servingctl(
        [
            f"--config={etc / 'servingd.yaml'}",
            f"--rest-url=http://127.0.0.1:{server.rest_port}",
            "status",
        ]
    )
    assert code == 0
    return capsys.readouterr().out


def source_of(server: ServingdProcess) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models", timeout=10) as r:
        models = json.loads(r.read())["models"]
    return dict(next(m for m in models if m["name"] == "hp2")["source"])


def wait_source(server: ServingdProcess, state: str) -> dict[str, object]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        source = source_of(server)
        if source["state"] == state:
            return source
        time.sleep(0.1)
    raise AssertionError(f"source never {state}: {source_of(server)}\n{server.output()}")


def test_published_version_is_served(
    daemon: list[ServingdProcess], etc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = daemon[0]
    server.wait_healthy(WAIT_S)
    with PredictLoad(server.channel(), "hp2", clients=1) as load:
        load.wait_for_version(1, WAIT_S)
    assert load.failures == []
    assert (etc / "cache" / BUCKET / "hp2" / "1" / "saved_model.pb").is_file()
    out = status(server, etc, capsys)
    assert ["hp2", "1", "AVAILABLE"] in [line.split() for line in out.splitlines()]
    assert f"hp2  s3://{BUCKET}/hp2  ok" in out


def test_new_version_under_load_zero_failures(
    daemon: list[ServingdProcess], s3: MotoServer, hp2: Path
) -> None:
    server = daemon[0]
    with PredictLoad(server.channel(), "hp2", clients=16) as load:
        load.wait_calls(50)
        upload_version(s3.client(), BUCKET, "hp2/2", hp2, manifest=True)
        load.wait_for_version(2, WAIT_S)
        load.wait_calls(50)
    assert load.failures == []
    assert load.versions == {1, 2}


def test_store_stopped_keeps_serving_and_shows_the_error(
    daemon: list[ServingdProcess],
    s3: MotoServer,
    hp2: Path,
    etc: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = daemon[0]
    s3.stop()
    with PredictLoad(server.channel(), "hp2", clients=4) as load:
        source = wait_source(server, "error")
        load.wait_calls(50)
    assert load.failures == []
    assert load.versions == {2}
    assert "unreachable" in str(source["message"]) and f"bucket {BUCKET}" in str(source["message"])
    out = status(server, etc, capsys)
    assert f"hp2  s3://{BUCKET}/hp2  error: Base path s3://{BUCKET}/hp2 of model hp2" in out
    with urllib.request.urlopen(
        f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics", timeout=10
    ) as reply:
        metrics = reply.read().decode()
    assert 'servingd_s3_errors_total{kind="list",model_name="hp2"}' in metrics
    assert "model hp2 cannot be listed" in server.output()

    s3.start()  # back, empty: the publisher uploads again
    s3.client().create_bucket(Bucket=BUCKET)
    upload_version(s3.client(), BUCKET, "hp2/2", hp2, manifest=True)
    wait_source(server, "ok")


def test_restart_with_the_store_stopped_serves_from_the_cache(
    daemon: list[ServingdProcess], s3: MotoServer, etc: Path
) -> None:
    daemon[0].stop()
    s3.stop()
    server = ServingdProcess([f"--config={etc / 'servingd.yaml'}"]).start()
    daemon.append(server)
    server.wait_healthy(WAIT_S)
    with PredictLoad(server.channel(), "hp2", clients=1) as load:
        load.wait_for_version(2, WAIT_S)
    assert load.failures == []
    assert source_of(server)["state"] == "error"
    assert "from the local cache" in server.output()
