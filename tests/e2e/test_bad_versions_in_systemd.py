"""Bad model versions and bad edits in a real systemd: the box keeps serving what it can.

One container (systemd as PID 1, see nspawn.py) for the module, the package installed in it;
the tests are the steps of one scenario and run in file order:

1. a fresh start with a good half_plus_two 123 and a corrupt 124 (an empty saved_model.pb)
   serves 123 and READY comes; status shows 124 failed with its reason;
2. while a version of another model waits to retry its load, a reload that adds a model
   returns at once and the new model serves;
3. `systemctl reload` with a broken drop-in exits non-zero, the old config keeps serving;
4. `systemctl restart` with it fails at err priority and stops after the start limit;
5. `journalctl MODEL_NAME=x` shows x's load failures and retries.

Needs root, systemd-nspawn and the package built by `make deb` in build/deb/.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nspawn import Container, ensure_dependencies, ensure_rootfs
from test_package_in_systemd import (
    E2E_DIR,
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    MODEL_TIMEOUT,
    MODELS,
    MODELS_D,
    SERVICE_TIMEOUT,
    _skip_unless_possible,
    predictions,
    service_state,
    status_text,
    wait_for,
)

from support.testdata import project_testdata

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

# The packaged defaults (servingd.yaml: loading.*): a failed attempt is retried every 60 s.
RETRY_INTERVAL_S = 60.0
WORK = E2E_DIR / "work-bad-versions"


def good() -> Path:
    """A good half_plus_two version (the project's own export, tests/support/testdata)."""
    return project_testdata() / "saved_model_half_plus_two_cpu" / "00000123"


@pytest.fixture(scope="module")
def deb() -> Path:
    return _skip_unless_possible()


@pytest.fixture(scope="module")
def box(deb: Path) -> Iterator[Container]:
    # systemd-nspawn names a container after its directory: a name of its own lets this
    # module boot beside another e2e container (both named "rootfs" would collide).
    rootfs = ensure_rootfs(E2E_DIR / "bad-versions-rootfs")
    ensure_dependencies(rootfs, deb)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("clients.py"), WORK / "clients.py")
    binds = {deb.parent: "/srv/debs", WORK: "/srv/e2e"}
    with Container(rootfs, bind_ro=binds, log_path=E2E_DIR / "console-bad-versions.log") as c:
        r = c.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", f"/srv/debs/{deb.name}"],
            check=False,
            timeout=600,
        )
        assert r.returncode == 0, f"apt-get install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        yield c
        (E2E_DIR / "journal-bad-versions.txt").write_text(
            c.run(["journalctl", "-b", "--no-pager", "-o", "short-precise"], check=False).stdout
        )


def add_model(box: Container, name: str, versions: dict[int, Path]) -> None:
    for version, source in versions.items():
        box.copy_in(source, f"{MODELS}/{name}/{version}")
    box.run(["chown", "-R", "servingd:servingd", f"{MODELS}/{name}"])
    box.write_file(f"{MODELS_D}/{name}.yaml", f"base_path: {MODELS}/{name}\n")


def servingctl_status(box: Container) -> str:
    return box.run(["servingctl", "status"]).stdout


def journal(box: Container, *match: str) -> list[dict[str, str]]:
    out = box.run(["journalctl", "-b", "-o", "json", "--no-pager", *match]).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_fresh_start_with_a_corrupt_newest_version_serves_the_one_below(box: Container) -> None:
    add_model(box, "half_plus_two", {123: good(), 124: good()})
    box.run(["truncate", "-s", "0", f"{MODELS}/half_plus_two/124/saved_model.pb"])
    box.run(["systemctl", "stop", "servingd"], timeout=SERVICE_TIMEOUT)
    started = time.monotonic()
    # Type=notify: `systemctl start` returns once READY=1 came (or fails on a timeout).
    box.run(["systemctl", "start", "servingd"], timeout=SERVICE_TIMEOUT)
    ready_s = time.monotonic() - started
    # REST first: the gRPC client imports TensorFlow, which would dominate the timing.
    got = wait_for("half_plus_two to answer", lambda: predictions(box, "rest", "half_plus_two"), 30)
    answered_s = time.monotonic() - started
    print(
        f"E2E fresh start: READY after {ready_s:.1f} s, Predict from 123 after {answered_s:.1f} s"
    )
    assert got == HALF_PLUS_TWO
    assert predictions(box, "grpc", "half_plus_two") == HALF_PLUS_TWO
    assert service_state(box) == "active"
    # Well within one retry interval: the corrupt 124 was not retried before falling back.
    assert answered_s < RETRY_INTERVAL_S
    status = servingctl_status(box)
    assert "half_plus_two: serving 123; 124 failed: " in status, status
    assert "1 model, 1 version available, 1 error" in status_text(box)


def test_reload_adding_a_model_while_a_version_retries_returns_in_seconds(box: Container) -> None:
    # flaky/1 cannot be read by the service (root's 0600 file): PERMISSION_DENIED is retried.
    add_model(box, "flaky", {1: good()})
    box.sh(
        f"chown root:root {MODELS}/flaky/1/variables/* && chmod 600 {MODELS}/flaky/1/variables/*"
    )
    box.run(["systemctl", "reload", "servingd"], timeout=SERVICE_TIMEOUT)
    wait_for(
        "flaky's first attempt to fail and a retry to be scheduled",
        lambda: any(
            "retry 1 of 5" in e.get("MESSAGE", "") for e in journal(box, "MODEL_NAME=flaky")
        ),
        60,
    )
    add_model(
        box, "half_plus_three", {1: project_testdata() / "saved_model_half_plus_three" / "00000123"}
    )
    started = time.monotonic()
    box.run(["systemctl", "reload", "servingd"], timeout=SERVICE_TIMEOUT)
    reload_s = time.monotonic() - started
    got = predictions(box, "rest", "half_plus_three")
    print(f"E2E reload adding half_plus_three while flaky retries: {reload_s:.1f} s")
    assert got == HALF_PLUS_THREE
    assert reload_s < RETRY_INTERVAL_S  # it did not wait for flaky's retry
    status = servingctl_status(box)
    assert "flaky: serving nothing; 1 failed, retrying: " in status, status


def test_journal_shows_a_models_load_failures_and_retries(box: Container) -> None:
    flaky = journal(box, "MODEL_NAME=flaky")
    retries = [e for e in flaky if "retry 1 of 5" in e.get("MESSAGE", "")]
    assert retries and retries[0]["MODEL_VERSION"] == "1" and retries[0]["PRIORITY"] == "4"
    broken = journal(box, "MODEL_NAME=half_plus_two", "MODEL_VERSION=124")
    messages = [e["MESSAGE"] for e in broken]
    assert any("failed, not retrying" in m for m in messages), messages
    fallback = [e for e in broken if "serving version 123 instead" in e["MESSAGE"]]
    assert fallback and fallback[0]["PRIORITY"] == "4", messages
    assert "version 124 failed to load" in fallback[0]["MESSAGE"]


def test_reload_with_a_broken_drop_in_fails_and_the_old_config_keeps_serving(
    box: Container,
) -> None:
    box.write_file(f"{MODELS_D}/broken.yaml", "name: [broken\nbase_path: {\n")
    r = box.run(["systemctl", "reload", "servingd"], check=False, timeout=SERVICE_TIMEOUT)
    assert r.returncode != 0, r.stdout + r.stderr
    assert service_state(box) == "active"
    assert predictions(box, "rest", "half_plus_two") == HALF_PLUS_TWO
    errors = box.run(["journalctl", "-b", "-u", "servingd", "-p", "err", "--no-pager", "-o", "cat"])
    assert "broken.yaml:" in errors.stdout, errors.stdout
    shown = box.run(["systemctl", "status", "servingd", "--no-pager"], check=False).stdout
    assert "broken.yaml" in shown, shown


def test_restart_with_a_broken_drop_in_fails_at_err_priority_and_stops(box: Container) -> None:
    r = box.run(["systemctl", "restart", "servingd"], check=False, timeout=SERVICE_TIMEOUT)
    assert r.returncode != 0

    def unit_log() -> str:
        return box.run(["journalctl", "-b", "-u", "servingd", "--no-pager", "-o", "cat"]).stdout

    # RestartSec=5s, StartLimitBurst=5 in StartLimitIntervalSec=120s: a few tries, then stop.
    wait_for(
        "systemd to stop restarting the unit",
        lambda: "Start request repeated too quickly" in unit_log(),
        120,
    )
    assert service_state(box) == "failed"
    errors = box.run(
        ["journalctl", "-b", "-u", "servingd", "-p", "err", "--no-pager", "-o", "cat"]
    ).stdout
    refused = [ln for ln in errors.splitlines() if "configuration refused" in ln]
    assert any(f"{MODELS_D}/broken.yaml:2" in ln for ln in refused), errors
    # It stays down: no more starts after the limit.
    n = box.run(["systemctl", "show", "-P", "NRestarts", "servingd"]).stdout.strip()
    time.sleep(12)  # more than two RestartSec= periods
    assert box.run(["systemctl", "show", "-P", "NRestarts", "servingd"]).stdout.strip() == n
    assert service_state(box) == "failed"
    box.run(["rm", f"{MODELS_D}/broken.yaml"])
    box.run(["systemctl", "reset-failed", "servingd"])
    box.run(["systemctl", "start", "servingd"], timeout=SERVICE_TIMEOUT)
    got = wait_for(
        "half_plus_two again", lambda: predictions(box, "rest", "half_plus_two"), MODEL_TIMEOUT
    )
    assert got == HALF_PLUS_TWO
