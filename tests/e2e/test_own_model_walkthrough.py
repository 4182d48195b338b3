"""The README's "Serving your own model" walkthrough, run as written on the installed package.

The commands come from the README itself (the block between its walkthrough markers), so the
walkthrough a sysadmin follows and the one this test runs cannot drift apart: everything up to
the block's `servingctl predict` runs once, as root, in a fresh container with the .deb
installed; then the predict command runs until it answers (the README says loading takes a
few seconds), and its answer must be the one the README prints under it.

Needs root, systemd-nspawn and debootstrap (see nspawn.py) and the package built by
`make deb` in build/deb/<codename>/ (SERVINGD_DIST picks the release, as in nspawn.py). The
release's tree is cached in build/e2e/<codename>/rootfs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nspawn import DIST, Container, ensure_dependencies, ensure_rootfs

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DEB_DIR = REPO / "build" / "deb" / DIST
E2E_DIR = REPO / "build" / "e2e" / DIST
BLOCK = re.compile(
    r"<!-- walkthrough:own-model:begin -->\s*```sh\n(?P<script>.*?)```\s*"
    r"<!-- walkthrough:own-model:end -->",
    re.DOTALL,
)
# TensorFlow's import and a model load on 2 shared cores take seconds, not minutes.
SERVICE_TIMEOUT = 180.0
ANSWER_TIMEOUT = 120.0


@dataclass(frozen=True)
class Walkthrough:
    setup: str  # the shell lines before the check: export, drop-in, reload, status
    check: str  # the `servingctl predict ...` line
    answer: object  # the JSON the README prints under it
    model: str  # the model the check asks

    @classmethod
    def from_readme(cls, text: str) -> Walkthrough:
        found = BLOCK.search(text)
        assert found, "README.md has no walkthrough:own-model block"
        lines = found["script"].splitlines()
        at = next(i for i, ln in enumerate(lines) if ln.startswith("servingctl predict "))
        answer = lines[at + 1].removeprefix("#").strip()
        model = lines[at].split()[2]
        return cls("\n".join(lines[:at]) + "\n", lines[at], json.loads(answer), model)


def test_the_readme_block_is_a_walkthrough() -> None:
    """The parse the e2e test below relies on (this one runs in every suite): a reordered or
    renamed block fails here, not in a container minutes later."""
    walk = Walkthrough.from_readme(README.read_text())
    assert walk.model == "my_model"
    assert f"/var/lib/servingd/models/{walk.model}/1" in walk.setup
    assert f"/etc/servingd/models.d/{walk.model}.yaml" in walk.setup
    assert "systemctl reload servingd" in walk.setup
    assert walk.answer == {"predictions": [[2.5], [3.0], [4.5]]}


@pytest.fixture(scope="module")
def deb() -> Path:
    if os.geteuid() != 0:
        pytest.skip("e2e needs root (systemd-nspawn, debootstrap, nsenter)")
    if not (
        shutil.which("systemd-nspawn", path="/usr/bin")
        and shutil.which("debootstrap", path="/usr/sbin")
    ):
        pytest.skip("needs systemd-nspawn and debootstrap: `make e2e` installs them")
    debs = sorted(DEB_DIR.glob("servingd_*.deb"))
    if not debs:
        pytest.skip(f"no servingd_*.deb in {DEB_DIR}: run `make deb` (or `make e2e`)")
    return debs[-1]


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Container]:
    """A fresh container with the package installed and its service active."""
    rootfs = ensure_rootfs(E2E_DIR / "rootfs")
    ensure_dependencies(rootfs, deb)
    binds = {deb.parent: "/srv/debs"}
    with Container(rootfs, bind_ro=binds, log_path=E2E_DIR / "walkthrough-console.log") as box:
        try:
            box.run(
                [
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    f"/srv/debs/{deb.name}",
                ],
                timeout=600,
            )
            wait_active(box)
            yield box
        finally:
            (E2E_DIR / "walkthrough-journal.txt").write_text(
                box.run(
                    ["journalctl", "-b", "--no-pager", "-o", "short-precise"], check=False
                ).stdout
            )


def wait_active(box: Container) -> None:
    deadline = time.monotonic() + SERVICE_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        state = box.run(["systemctl", "is-active", "servingd"], check=False).stdout.strip()
        if state in ("active", "failed"):
            break
        time.sleep(0.5)
    assert state == "active", f"servingd is {state!r} after install; see walkthrough-journal.txt"


def answer_of(box: Container, check: str) -> object | None:
    """The check command's JSON answer once it succeeds, None while the model is loading."""
    try:
        r = box.sh(check, check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(r.stdout) if r.returncode == 0 else None


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_readme_walkthrough_serves_my_model(installed: Container) -> None:
    walk = Walkthrough.from_readme(README.read_text())
    done = installed.run(["sh", "-e", "-c", walk.setup], check=False, timeout=600)
    assert done.returncode == 0, (
        f"the README's walkthrough failed before its check:\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}"
    )

    deadline = time.monotonic() + ANSWER_TIMEOUT
    got = answer_of(installed, walk.check)
    while got is None and time.monotonic() < deadline:
        time.sleep(1)
        got = answer_of(installed, walk.check)
    last = installed.sh(walk.check, check=False)
    assert got == walk.answer, (
        f"waited {ANSWER_TIMEOUT:.0f} s for {walk.check!r} to answer {walk.answer}; last: "
        f"exit {last.returncode}, {last.stdout.strip()} {last.stderr.strip()[-1000:]}"
    )

    # What the README says `servingctl status` shows once it is done.
    status = installed.run(["servingctl", "status"]).stdout
    assert re.search(rf"^{walk.model}\s+1\s+AVAILABLE\b", status, re.MULTILINE), status
