"""The Debian package serving an s3:// base path under a real systemd.

One container (nspawn.py) for the module, its own private network. The S3 store is moto's
server from the host's virtualenv, started by the test *inside the container's network
namespace* (`nsenter -n`: the container's loopback, the host's files), so the service
reaches it at 127.0.0.1:9000 and nothing else can. The steps, in order: install the
package; a drop-in gives the store's address as TF Serving's S3_ENDPOINT variables and the
keys through `LoadCredential=s3:` from a root-only file; a models.d drop-in with an s3://
base path is served after `systemctl reload`; then the store is stopped and the service
restarted: it serves from /var/cache/servingd.

Needs root, systemd-nspawn and debootstrap and `make deb` (as test_package_in_systemd.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_package_in_systemd as package_e2e
from nspawn import Container
from test_package_in_systemd import (
    E2E_DIR,
    HALF_PLUS_TWO,
    INSTANCES,
    MODEL_TIMEOUT,
    MODELS_D,
    REPO,
    SERVICE_TIMEOUT,
    client,
    predictions,
    service_state,
    wait_for,
)

from support.testdata import project_testdata

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

S3_PORT = 9000


def hp2_version() -> Path:
    return project_testdata() / "saved_model_half_plus_two_cpu" / "00000123"


BUCKET = "models"
CREDENTIALS = "/etc/servingd/s3-credentials"
DROP_IN = "/etc/systemd/system/servingd.service.d/s3.conf"
CACHE = "/var/cache/servingd/s3"
HOST_PY = sys.executable

# The package and container fixtures of the package's own scenario (a container per module).
deb = package_e2e.deb
box = package_e2e.box


def in_container_network(box: Container, *args: str) -> list[str]:
    assert box.init_pid is not None
    return ["nsenter", "-t", str(box.init_pid), "-n", "--", *args]


@pytest.fixture(scope="module")
def store(box: Container) -> Iterator[subprocess.Popen[bytes]]:
    """moto's S3 server on the container's 127.0.0.1:9000, stopped by PID."""
    log = (E2E_DIR / "moto.log").open("wb")
    script = Path(HOST_PY).parent / "moto_server"
    proc = subprocess.Popen(
        in_container_network(box, str(script), "-H", "127.0.0.1", "-p", str(S3_PORT)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        publish(box, "create")
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(15)
        log.close()


def publish(box: Container, what: str) -> None:
    """Runs the host's python in the container's network: create the bucket (waiting for
    the server), or upload half_plus_two as version 1 with a SHA256SUMS."""
    code = (
        "import sys, time\n"
        f"sys.path[:0] = [{str(REPO / 'src')!r}, {str(REPO / 'tests')!r}]\n"
        "from pathlib import Path\n"
        "from support.s3_server import MotoServer, upload_version\n"
        f"server = MotoServer({S3_PORT})\n"
        "client = server.client()\n"
        f"if {what!r} == 'create':\n"
        "    deadline = time.monotonic() + 60\n"
        "    while True:\n"
        "        try:\n"
        f"            client.create_bucket(Bucket={BUCKET!r}); break\n"
        "        except Exception:\n"
        "            if time.monotonic() > deadline: raise\n"
        "            time.sleep(0.2)\n"
        "else:\n"
        f"    src = Path({str(hp2_version())!r})\n"
        f"    upload_version(client, {BUCKET!r}, 'hp2/1', src, manifest=True)\n"
    )
    subprocess.run(in_container_network(box, HOST_PY, "-c", code), check=True, timeout=120)


def journal(box: Container) -> str:
    return box.run(
        ["journalctl", "-b", "-u", "servingd", "--no-pager", "-o", "cat"], check=False
    ).stdout


def test_install_and_start(box: Container, deb: Path) -> None:
    r = box.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", f"/srv/debs/{deb.name}"],
        check=False,
        timeout=600,
    )
    assert r.returncode == 0, f"apt-get install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    state = wait_for(
        "servingd to be active",
        lambda: service_state(box) if service_state(box) in ("active", "failed") else None,
        SERVICE_TIMEOUT,
    )
    assert state == "active", journal(box)[-3000:]


def test_keys_through_load_credential_and_served_after_reload(
    box: Container,
    store: subprocess.Popen[bytes],
) -> None:
    publish(box, "upload")
    box.write_file(
        CREDENTIALS,
        "[default]\naws_access_key_id = servingd-test\naws_secret_access_key = secret\n",
    )
    box.run(["chmod", "600", CREDENTIALS])
    box.write_file(
        DROP_IN,
        "[Service]\n"
        f"Environment=S3_ENDPOINT=127.0.0.1:{S3_PORT} S3_USE_HTTPS=0 AWS_REGION=us-east-1\n"
        f"LoadCredential=s3:{CREDENTIALS}\n",
    )
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "restart", "servingd"], timeout=SERVICE_TIMEOUT)
    box.write_file(f"{MODELS_D}/hp2.yaml", f"name: hp2\nbase_path: s3://{BUCKET}/hp2\n")
    box.run(["systemctl", "reload", "servingd"])
    got = wait_for(
        "REST predictions of hp2", lambda: predictions(box, "rest", "hp2"), MODEL_TIMEOUT
    )
    assert got == HALF_PLUS_TWO
    assert (
        box.run(["test", "-f", f"{CACHE}/{BUCKET}/hp2/1/saved_model.pb"], check=False).returncode
        == 0
    )
    owner = box.run(["stat", "-c", "%U %a", f"{CACHE}/{BUCKET}/hp2/1"]).stdout.split()
    assert owner[0] == "servingd"
    status = box.run(["servingctl", "status"]).stdout
    assert f"hp2  s3://{BUCKET}/hp2  ok" in status, status
    assert "Model hp2 version 1 fetched from s3://models/hp2/1" in journal(box)
    # The key never reached the unit's environment nor the journal.
    shown = box.run(["systemctl", "show", "servingd", "-P", "Environment"]).stdout
    assert "secret" not in shown and "aws_secret_access_key" not in journal(box)


def test_world_readable_credentials_refused_by_check_config(box: Container) -> None:
    box.run(["chmod", "644", CREDENTIALS])
    text = box.run(["cat", "/etc/servingd/servingd.yaml"]).stdout
    box.write_file("/run/s3-check.yaml", text + f"s3:\n  credentials_file: {CREDENTIALS}\n")
    r = box.run(
        ["servingd", "--check-config", "--config=/run/s3-check.yaml"], check=False, timeout=120
    )
    box.run(["chmod", "600", CREDENTIALS])
    assert r.returncode == 1
    assert "S3 credentials file is readable by every user" in r.stdout + r.stderr


def test_restart_with_the_store_down_serves_from_the_cache(
    box: Container,
    store: subprocess.Popen[bytes],
) -> None:
    os.kill(store.pid, signal.SIGTERM)
    store.wait(15)
    box.run(["systemctl", "restart", "servingd"], timeout=SERVICE_TIMEOUT)
    got = wait_for(
        "REST predictions of hp2 from the cache",
        lambda: predictions(box, "rest", "hp2"),
        MODEL_TIMEOUT,
    )
    assert got == HALF_PLUS_TWO
    status = box.run(["servingctl", "status"]).stdout
    assert "unreachable" in status, status
    assert "from the local cache" in journal(box)
    grpc = client(box, "grpc", "hp2", json.dumps(INSTANCES), check=False)
    assert grpc.returncode == 0, grpc.stderr
