"""The Debian package in a real systemd: install, serve, reload, restart, upgrade, purge.

One container (systemd as PID 1, see nspawn.py) is booted for the module; the tests are the
steps of one scenario and run in file order, each leaving the container in the state the next
one starts from. A step that fails names what it waited for and what it saw instead.

Needs root, systemd-nspawn and debootstrap (installed on demand) and the package built by
`make deb` in build/deb/DIST/ (nspawn.DIST: this machine's release, or `make e2e DIST=...`). The
tree of that release is cached in build/e2e/DIST/rootfs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from nspawn import DIST, Container, NspawnError, ensure_dependencies, ensure_rootfs

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
DEB_DIR = REPO / "build" / "deb" / DIST
E2E_DIR = REPO / "build" / "e2e" / DIST

VENV_PY = "/usr/lib/servingd/bin/python"
MODELS = "/var/lib/servingd/models"
MODELS_D = "/etc/servingd/models.d"
CONFIG = "/etc/servingd/servingd.yaml"
REST = "http://127.0.0.1:8501"
INSTANCES = [1.0, 2.0, 5.0]
HALF_PLUS_TWO = [2.5, 3.0, 4.5]
HALF_PLUS_THREE = [3.5, 4.0, 5.5]
# Waits: TensorFlow's import and a model load on 2 shared cores take seconds, not minutes.
SERVICE_TIMEOUT = 180.0
MODEL_TIMEOUT = 90.0

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
        except (NspawnError, subprocess.SubprocessError) as e:
            last = e
        else:
            if last:
                return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}; last seen: {last!r}")
        time.sleep(interval)


# -- fixtures -------------------------------------------------------------------------------


def _skip_unless_possible() -> Path:
    if os.geteuid() != 0:
        pytest.skip("e2e needs root (systemd-nspawn, debootstrap, nsenter)")
    if not (
        shutil.which("systemd-nspawn", path="/usr/bin")
        and shutil.which("debootstrap", path="/usr/sbin")
    ):
        r = subprocess.run(
            [str(REPO / "scripts/apt-deps.sh"), "systemd-container", "debootstrap"],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"systemd-nspawn/debootstrap cannot be installed: {r.stderr[-500:]}")
    debs = sorted(DEB_DIR.glob("servingd_*.deb"))
    if not debs:
        pytest.skip(f"no servingd_*.deb in {DEB_DIR}: run `make deb` (or `make e2e`)")
    return debs[-1]


@pytest.fixture(scope="module")
def deb() -> Path:
    return _skip_unless_possible()


@pytest.fixture(scope="module")
def box(deb: Path) -> Iterator[Container]:
    rootfs = ensure_rootfs(E2E_DIR / "rootfs")
    ensure_dependencies(rootfs, deb)
    work = E2E_DIR / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("tf_probe.py"), work / "tf_probe.py")
    shutil.copy(Path(__file__).with_name("clients.py"), work / "clients.py")
    binds = {deb.parent: "/srv/debs", work: "/srv/e2e"}
    with Container(rootfs, bind_ro=binds, log_path=E2E_DIR / "console.log") as c:
        yield c
        # What a failed run leaves for the reader: the unit's journal and status.
        (E2E_DIR / "journal.txt").write_text(
            c.run(["journalctl", "-b", "--no-pager", "-o", "short-precise"], check=False).stdout
        )


def service_state(box: Container) -> str:
    return box.run(["systemctl", "is-active", "servingd"], check=False).stdout.strip()


def main_pid(box: Container) -> int:
    out = box.run(["systemctl", "show", "-P", "MainPID", "servingd"]).stdout.strip()
    return int(out or 0)


def status_text(box: Container) -> str:
    return box.run(["systemctl", "show", "-P", "StatusText", "servingd"]).stdout.strip()


def client(box: Container, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run tests/e2e/clients.py with the package's own python (its TF Serving stubs)."""
    return box.run([VENV_PY, "/srv/e2e/clients.py", *args], check=check, timeout=60)


def predictions(box: Container, kind: str, model: str) -> list[float] | None:
    r = client(box, kind, model, json.dumps(INSTANCES), check=False)
    if r.returncode != 0:
        return None
    return [round(v, 6) for v in json.loads(r.stdout)]


def export_model(box: Container, model: str, dest: str) -> None:
    """The package's own exporter (servingd.tools.export_models) writes ``model`` to ``dest``."""
    box.run([VENV_PY, "-m", "servingd.tools.export_models", model, dest], timeout=300)


def place_model(box: Container, name: str) -> None:
    """Version 1 of ``name`` under the model root, exported inside the container."""
    export_model(box, name, f"{MODELS}/{name}/1")
    box.run(["chown", "-R", "servingd:servingd", f"{MODELS}/{name}"])


def reload(box: Container) -> None:
    box.run(["systemctl", "reload", "servingd"])


# -- the scenario, in order -------------------------------------------------------------------


def test_install(box: Container, deb: Path) -> None:
    r = box.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", f"/srv/debs/{deb.name}"],
        check=False,
        timeout=600,
    )
    # The package is unpacked even when the service fails to start; the later steps say more.
    assert box.run(["test", "-x", "/usr/bin/servingd"], check=False).returncode == 0, r.stdout
    assert box.run(["getent", "passwd", "servingd"], check=False).returncode == 0
    for path in (CONFIG, f"{MODELS_D}/example.yaml.disabled", MODELS):
        assert box.run(["test", "-e", path], check=False).returncode == 0, path
    assert r.returncode == 0, f"apt-get install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def test_tensorflow_predicts_inside_the_units_sandbox(box: Container) -> None:
    """The unit's hardening (SystemCallFilter=, PrivateUsers=, ProtectSystem=, ...) with
    TensorFlow running in it: a probe unit made of servingd.service's own [Service] section with
    only the process lines swapped loads a SavedModel in a Session and predicts."""
    unit = box.run(["cat", "/lib/systemd/system/servingd.service"]).stdout
    swapped = (
        "Type=",
        "NotifyAccess=",
        "ExecStartPre=",
        "ExecStart=",
        "ExecReload=",
        "WatchdogSec=",
        "Restart=",
        "RestartSec=",
    )
    lines = [ln for ln in unit.splitlines() if not ln.startswith(swapped)]
    at = lines.index("[Service]") + 1
    lines[at:at] = [
        "Type=oneshot",
        "StandardOutput=journal",
        f"ExecStart={VENV_PY} /srv/e2e/tf_probe.py {MODELS}/probe/1",
    ]
    export_model(box, "half_plus_two_tf1", f"{MODELS}/probe/1")
    box.write_file("/etc/systemd/system/servingd-tf-probe.service", "\n".join(lines) + "\n")
    box.run(["systemctl", "daemon-reload"])
    r = box.run(["systemctl", "start", "servingd-tf-probe"], check=False, timeout=300)
    log = box.run(
        ["journalctl", "-b", "-u", "servingd-tf-probe", "--no-pager", "-o", "cat"], check=False
    ).stdout
    box.run(["rm", "-rf", f"{MODELS}/probe", "/etc/systemd/system/servingd-tf-probe.service"])
    box.run(["systemctl", "daemon-reload"])
    assert r.returncode == 0, f"TensorFlow failed under the unit's sandbox:\n{log[-5000:]}"
    assert f"PROBE session_predict={HALF_PLUS_TWO}" in log, log[-3000:]
    # XLA's JIT needs writable+executable pages: the reason the unit has MemoryDenyWriteExecute=no.
    assert f"PROBE xla_jit={HALF_PLUS_TWO}" in log, log[-3000:]


def test_service_is_active(box: Container) -> None:
    def active() -> str | None:
        s = service_state(box)
        if s == "failed":
            return "failed"
        return s if s == "active" else None

    state = wait_for("servingd to be active", active, SERVICE_TIMEOUT)
    journal = box.run(
        ["journalctl", "-b", "-u", "servingd", "--no-pager", "-n", "40"], check=False
    ).stdout
    assert state == "active", f"servingd is {state}:\n{journal}"


def test_rest_predict(box: Container) -> None:
    place_model(box, "half_plus_two")
    box.write_file(
        f"{MODELS_D}/half_plus_two.yaml",
        f"name: half_plus_two\nbase_path: {MODELS}/half_plus_two\n",
    )
    reload(box)
    got = wait_for(
        "REST predictions of half_plus_two",
        lambda: predictions(box, "rest", "half_plus_two"),
        MODEL_TIMEOUT,
    )
    assert got == HALF_PLUS_TWO


def test_grpc_predict(box: Container) -> None:
    assert predictions(box, "grpc", "half_plus_two") == HALF_PLUS_TWO, client(
        box, "grpc", "half_plus_two", json.dumps(INSTANCES), check=False
    ).stderr


def test_reload_adds_a_model_while_the_old_one_keeps_answering(box: Container) -> None:
    # A REST client loops on half_plus_two in the background through the whole reload.
    box.sh(
        f"{VENV_PY} /srv/e2e/clients.py loop half_plus_two '{json.dumps(INSTANCES)}' "
        "/run/e2e-loop >/run/e2e-loop.log 2>&1 &"
    )
    wait_for(
        "the background client to start",
        lambda: box.run(["test", "-s", "/run/e2e-loop.ok"], check=False).returncode == 0,
        30,
    )
    place_model(box, "half_plus_three")
    box.write_file(
        f"{MODELS_D}/half_plus_three.yaml",
        f"name: half_plus_three\nbase_path: {MODELS}/half_plus_three\n",
    )
    reload(box)
    got = wait_for(
        "REST predictions of half_plus_three",
        lambda: predictions(box, "rest", "half_plus_three"),
        MODEL_TIMEOUT,
    )
    time.sleep(2)  # a few more requests on the old model after the new one is in
    box.run(["touch", "/run/e2e-loop.stop"])
    wait_for(
        "the background client to stop",
        lambda: box.run(["test", "-e", "/run/e2e-loop.done"], check=False).returncode == 0,
        30,
    )
    done = json.loads(box.run(["cat", "/run/e2e-loop.done"]).stdout)
    assert got == HALF_PLUS_THREE
    assert done["ok"] > 0 and done["failed"] == 0, done


def test_journal_has_structured_fields(box: Container) -> None:
    def entries() -> list[dict[str, str]] | None:
        out = box.run(["journalctl", "-b", "-u", "servingd", "-o", "json", "--no-pager"]).stdout
        found = [
            e
            for e in map(json.loads, out.splitlines())
            if e.get("MODEL_NAME") == "half_plus_two" and "SERVABLE_STATE" in e
        ]
        return found or None

    found = wait_for(
        "journal entries with MODEL_NAME=half_plus_two and SERVABLE_STATE", entries, 10
    )
    assert any(
        e.get("SERVABLE_STATE") == "AVAILABLE" and e.get("MODEL_VERSION") == "1" for e in found
    ), found


def test_broken_config_is_refused_and_serving_goes_on(box: Container) -> None:
    pid = main_pid(box)
    box.write_file(f"{MODELS_D}/broken.yaml", "name: [broken\nbase_path: {\n")
    # ExecReload= waits for the outcome: a refused configuration fails `systemctl reload`.
    r = box.run(["systemctl", "reload", "servingd"], check=False, timeout=SERVICE_TIMEOUT)
    assert r.returncode != 0, r.stdout + r.stderr
    status = wait_for(
        "the Status line to name broken.yaml",
        lambda: (s := status_text(box)) and "broken.yaml" in s and s,
        30,
    )
    shown = box.run(["systemctl", "status", "servingd", "--no-pager", "-n0"], check=False).stdout
    assert "broken.yaml" in shown, shown
    assert service_state(box) == "active" and main_pid(box) == pid, status
    assert predictions(box, "rest", "half_plus_two") == HALF_PLUS_TWO
    box.run(["rm", f"{MODELS_D}/broken.yaml"])
    reload(box)
    wait_for("the Status line to drop the error", lambda: "broken.yaml" not in status_text(box), 30)


def test_systemd_restarts_a_killed_daemon(box: Container) -> None:
    pid = main_pid(box)
    assert pid > 0
    box.run(["kill", "-9", str(pid)])
    new = wait_for(
        "a new main PID in state active",
        lambda: service_state(box) == "active" and (p := main_pid(box)) not in (0, pid) and p,
        SERVICE_TIMEOUT,
    )
    assert new != pid
    assert (
        wait_for(
            "half_plus_two to answer after the restart",
            lambda: predictions(box, "rest", "half_plus_two"),
            MODEL_TIMEOUT,
        )
        == HALF_PLUS_TWO
    )


def _bumped_deb(deb: Path, dest_dir: Path) -> Path:
    """The same package with a higher version: unpacked, version and changelog bumped, repacked
    (rebuilding the venv again would double the build time for the same bits)."""
    version = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    new_version = f"{version}+e2e1"
    with tempfile.TemporaryDirectory(dir=E2E_DIR) as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["dpkg-deb", "--raw-extract", str(deb), str(tree)], check=True)
        control = tree / "DEBIAN" / "control"
        control.write_text(
            control.read_text().replace(f"Version: {version}\n", f"Version: {new_version}\n")
        )
        changelog = tree / "usr/share/doc/servingd/changelog.gz"
        if changelog.exists():
            old = subprocess.run(
                ["gzip", "-dc", str(changelog)], check=True, capture_output=True
            ).stdout
            date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
            entry = (
                f"servingd ({new_version}) bookworm; urgency=medium\n\n"
                "  * e2e upgrade test: the same build with a higher version.\n\n"
                f" -- e2e <e2e@localhost>  {date}\n\n"
            )
            changelog.write_bytes(
                subprocess.run(
                    ["gzip", "-9n"], input=entry.encode() + old, check=True, capture_output=True
                ).stdout
            )
        out = dest_dir / f"servingd_{new_version}_amd64.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zzstd", "-z1", "--build", str(tree), str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def test_upgrade_restarts_and_keeps_an_edited_conffile(box: Container, deb: Path) -> None:
    new = _bumped_deb(deb, E2E_DIR / "work")
    box.sh(f"echo '# edited by the e2e test' >> {CONFIG}")
    pid = main_pid(box)
    r = box.run(
        ["apt-get", "install", "-y", "-q", f"/srv/e2e/{new.name}"], check=False, timeout=600
    )
    assert r.returncode == 0, f"upgrade failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    version = box.run(["dpkg-query", "-W", "-f=${Version}", "servingd"]).stdout
    assert version.endswith("+e2e1"), version
    assert "# edited by the e2e test" in box.run(["cat", CONFIG]).stdout
    wait_for(
        "servingd active again with a new main PID",
        lambda: service_state(box) == "active" and main_pid(box) not in (0, pid),
        SERVICE_TIMEOUT,
    )
    assert (
        wait_for(
            "half_plus_two to answer after the upgrade",
            lambda: predictions(box, "rest", "half_plus_two"),
            MODEL_TIMEOUT,
        )
        == HALF_PLUS_TWO
    )


def test_purge_leaves_nothing_behind(box: Container) -> None:
    r = box.run(["apt-get", "purge", "-y", "-q", "servingd"], check=False, timeout=300)
    assert r.returncode == 0, f"purge failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    left = box.sh(
        "for p in /etc/servingd /var/lib/servingd /usr/lib/servingd /var/log/servingd "
        "/var/cache/servingd /usr/bin/servingd /lib/systemd/system/servingd.service; do "
        "[ -e $p ] && echo $p; done; true"
    ).stdout.split()
    # Nothing but the models the admin placed (README.Debian: purge keeps them).
    assert left == ["/var/lib/servingd"]
    kept = box.sh("cd /var/lib/servingd && find . -maxdepth 2 | sort").stdout.split()
    assert kept == [".", "./models", "./models/half_plus_three", "./models/half_plus_two"]
    assert box.run(["getent", "passwd", "servingd"], check=False).returncode != 0
    assert box.run(["getent", "group", "servingd"], check=False).returncode != 0
    assert box.run(["dpkg-query", "-W", "servingd"], check=False).returncode != 0
