"""Upgrades, remove and purge of the Debian package as an admin meets them, in a real systemd.

One container (nspawn.py) for the module; the tests are the steps of one scenario, in file
order. Three versions of the same build: the package of `make deb` is the middle one; an
older and a newer one are repacked from it (dpkg-deb: version and default configuration
changed, the same venv), so the upgrade paths are tested without building twice:

1. the older version is installed, the admin edits /etc/servingd/servingd.yaml, adds a model, a
   models.d drop-in and a unit drop-in, and the service serves it;
2. upgrade to the built version the way unattended-upgrades does (apt-get, noninteractive,
   --force-confdef --force-confold) while a client sends requests: what it saw (failed
   requests, the longest time without an answer) goes to build/e2e/DIST/upgrade-*.json;
3. upgrade to the newer version with plain `dpkg -i` and nothing on stdin: no prompt;
4. remove: configuration, models and user kept, no dangling systemd link; install again:
   enabled and serving; purge: the admin's models kept, everything else gone.

Needs root, systemd-nspawn, debootstrap and the package of `make deb` in build/deb/DIST/.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nspawn import DIST, Container, ensure_dependencies, ensure_rootfs
from test_package_in_systemd import (
    HALF_PLUS_TWO,
    INSTANCES,
    MODEL_TIMEOUT,
    MODELS,
    MODELS_D,
    SERVICE_TIMEOUT,
    VENV_PY,
    main_pid,
    predictions,
    service_state,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
DEB_DIR = REPO / "build" / "deb" / DIST
E2E_DIR = REPO / "build" / "e2e" / DIST
WORK = E2E_DIR / "upgrade-work"
CONFIG = "/etc/servingd/servingd.yaml"
EXAMPLE = f"{MODELS_D}/example.yaml.disabled"
DEFAULTS = "usr/share/servingd/conf"
ADMIN_EDIT = "# edited by the admin\n"
UNIT_DROPIN = "/etc/systemd/system/servingd.service.d/local.conf"
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/servingd.service"


def _version(deb: Path) -> str:
    out = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Version"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def _repack(tree: Path, defaults: dict[str, bytes], version: str, marker: str, out: Path) -> Path:
    """The unpacked build in ``tree`` as ``version``, its default configuration files (their
    built contents in ``defaults``) with ``marker`` appended, packed to ``out``."""
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}", control.read_text()))
    sums = (tree / "DEBIAN" / "md5sums").read_text().splitlines()
    for rel, built in defaults.items():
        content = built + marker.encode()
        (tree / rel).write_bytes(content)
        digest = hashlib.md5(content).hexdigest()
        sums = [f"{digest}  {rel}" if s.endswith(f"  {rel}") else s for s in sums]
    (tree / "DEBIAN" / "md5sums").write_text("\n".join(sums) + "\n")
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zzstd", "-z1", "--build", str(tree), str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


@pytest.fixture(scope="module")
def debs() -> dict[str, Path]:
    """{"old": older repack, "built": the package of `make deb`, "new": newer repack}."""
    from test_package_in_systemd import _skip_unless_possible

    built = _skip_unless_possible()
    assert built.parent == DEB_DIR, built
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    version = _version(built)
    with tempfile.TemporaryDirectory(dir=E2E_DIR) as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["dpkg-deb", "--raw-extract", str(built), str(tree)], check=True)
        defaults = {
            rel: (tree / rel).read_bytes()
            for rel in (f"{DEFAULTS}/servingd.yaml", f"{DEFAULTS}/models.d/example.yaml.disabled")
        }
        old = _repack(
            tree,
            defaults,
            f"{version}~e2e0",
            "# the older version\n",
            WORK / "servingd_old_amd64.deb",
        )
        new = _repack(
            tree,
            defaults,
            f"{version}+e2e2",
            "# the newer version\n",
            WORK / "servingd_new_amd64.deb",
        )
    shutil.copy(built, WORK / "servingd_built_amd64.deb")
    return {"old": old, "built": WORK / "servingd_built_amd64.deb", "new": new}


@pytest.fixture(scope="module")
def box(debs: dict[str, Path]) -> Iterator[Container]:
    rootfs = ensure_rootfs(E2E_DIR / "rootfs")
    ensure_dependencies(rootfs, debs["built"])
    shutil.copy(Path(__file__).with_name("clients.py"), WORK / "clients.py")
    with Container(rootfs, bind_ro={WORK: "/srv/e2e"}, log_path=E2E_DIR / "console.log") as c:
        yield c
        (E2E_DIR / "upgrade-journal.txt").write_text(
            c.run(["journalctl", "-b", "--no-pager", "-o", "short-precise"], check=False).stdout
        )


def _installed(box: Container) -> tuple[str, str]:
    r = box.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", "servingd"])
    status, version = r.stdout.split("|")
    return status.strip(), version


def _wait_serving(box: Container, old_pid: int = 0) -> int:
    pid = wait_for(
        "servingd active with a new main PID",
        lambda: service_state(box) == "active" and (p := main_pid(box)) not in (0, old_pid) and p,
        SERVICE_TIMEOUT,
    )
    got = wait_for(
        "half_plus_two to answer",
        lambda: predictions(box, "rest", "half_plus_two"),
        MODEL_TIMEOUT,
    )
    assert got == HALF_PLUS_TWO
    return int(pid)


def _file(box: Container, path: str) -> str:
    return box.run(["cat", path]).stdout


def _exists(box: Container, path: str) -> bool:
    return box.run(["test", "-e", path], check=False).returncode == 0


def _upgrade_under_load(box: Container, command: list[str], name: str, **kw: object) -> dict:
    """Run ``command`` (an upgrade) while a REST client loops on half_plus_two; return what the
    client saw, also written to build/e2e/DIST/upgrade-NAME.json."""
    prefix = f"/run/e2e-{name}"
    box.sh(
        f"{VENV_PY} /srv/e2e/clients.py loop half_plus_two '{json.dumps(INSTANCES)}' "
        f"{prefix} >{prefix}.log 2>&1 &"
    )
    wait_for("the client to start", lambda: _exists(box, f"{prefix}.ok"), 30)
    pid = main_pid(box)
    r = box.run(command, check=False, timeout=900, **kw)  # type: ignore[arg-type]
    assert r.returncode == 0, f"{command} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    _wait_serving(box, pid)
    box.run(["touch", f"{prefix}.stop"])
    wait_for("the client to stop", lambda: _exists(box, f"{prefix}.done"), 30)
    seen = json.loads(_file(box, f"{prefix}.done"))
    seen["command"] = " ".join(command)
    (E2E_DIR / f"upgrade-{name}.json").write_text(json.dumps(seen, indent=1) + "\n")
    print(
        f"UPGRADE {name}: {seen['failed']} failed of {seen['ok'] + seen['failed']}, "
        f"longest gap {seen['longest_gap_s']} s"
    )
    return seen


# -- the scenario, in order -------------------------------------------------------------------


def test_older_version_installs_and_serves_the_admins_setup(box: Container) -> None:
    r = box.run(
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "/srv/e2e/servingd_old_amd64.deb",
        ],
        check=False,
        timeout=600,
    )
    assert r.returncode == 0, f"install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert _file(box, CONFIG).endswith("# the older version\n")
    box.run(
        [
            VENV_PY,
            "-m",
            "servingd.tools.export_models",
            "half_plus_two",
            f"{MODELS}/half_plus_two/1",
        ],
        timeout=300,
    )
    box.run(["chown", "-R", "servingd:servingd", f"{MODELS}/half_plus_two"])
    box.write_file(
        f"{MODELS_D}/half_plus_two.yaml",
        f"name: half_plus_two\nbase_path: {MODELS}/half_plus_two\n",
    )
    box.write_file(UNIT_DROPIN, "[Service]\nEnvironment=E2E_ADMIN_DROPIN=1\n")
    box.sh(f"printf '{ADMIN_EDIT}' >> {CONFIG}")
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "restart", "servingd"], timeout=300)
    _wait_serving(box)


def test_unattended_upgrade_keeps_the_admins_edit_and_asks_nothing(box: Container) -> None:
    seen = _upgrade_under_load(
        box,
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "/srv/e2e/servingd_built_amd64.deb",
        ],
        "unattended",
    )
    status, version = _installed(box)
    assert status == "ii" and not version.endswith(("~e2e0", "+e2e2")), (status, version)
    config = _file(box, CONFIG)
    assert config.endswith("# the older version\n" + ADMIN_EDIT), config[-300:]
    # The new default beside the kept file, and a journal line saying so.
    dist = _file(box, CONFIG + ".ucf-dist")
    assert "# the older version" not in dist and "bind_address" in dist
    journal = box.run(["journalctl", "-b", "-t", "servingd", "--no-pager", "-o", "cat"]).stdout
    assert f"kept your edited {CONFIG}" in journal, journal[-2000:]
    # An unedited file takes the new default silently.
    assert "# the older version" not in _file(box, EXAMPLE)
    assert not _exists(box, EXAMPLE + ".ucf-dist")
    # The admin's models, model drop-in and unit drop-in are all still in force.
    assert _exists(box, f"{MODELS}/half_plus_two/1/saved_model.pb")
    assert _exists(box, f"{MODELS_D}/half_plus_two.yaml")
    env = box.run(["systemctl", "show", "-P", "Environment", "servingd"]).stdout
    assert "E2E_ADMIN_DROPIN=1" in env, env
    assert seen["ok"] > 0


def test_plain_dpkg_with_no_stdin_upgrades_without_a_prompt(box: Container) -> None:
    # dpkg -i with stdin at EOF: a conffile prompt would fail ("end of file on stdin at
    # conffile prompt") and leave the package half-configured.
    _upgrade_under_load(box, ["dpkg", "-i", "/srv/e2e/servingd_new_amd64.deb"], "dpkg", input="")
    status, version = _installed(box)
    assert status == "ii" and version.endswith("+e2e2"), (status, version)
    assert _file(box, CONFIG).endswith(ADMIN_EDIT)
    assert _file(box, CONFIG + ".ucf-dist").endswith("# the newer version\n")
    assert _file(box, EXAMPLE).endswith("# the newer version\n")


def test_keras_writes_into_the_cache_directory_not_home(box: Container) -> None:
    assert _exists(box, "/var/cache/servingd/keras/keras.json")
    home = box.sh("ls -A /var/lib/servingd").stdout.split()
    assert home == ["models"], home


def test_remove_keeps_data_and_leaves_no_dangling_link(box: Container) -> None:
    assert box.run(["test", "-L", WANTS_LINK], check=False).returncode == 0
    r = box.run(["apt-get", "remove", "-y", "-q", "servingd"], check=False, timeout=300)
    assert r.returncode == 0, f"remove failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    for path in (
        CONFIG,
        f"{MODELS_D}/half_plus_two.yaml",
        f"{MODELS}/half_plus_two/1",
        UNIT_DROPIN,
    ):
        assert _exists(box, path), path
    assert box.run(["getent", "passwd", "servingd"], check=False).returncode == 0
    dangling = box.sh("find /etc/systemd -xtype l").stdout.split()
    assert dangling == [], dangling


def test_install_after_remove_enables_and_serves_again(box: Container) -> None:
    r = box.run(
        ["apt-get", "install", "-y", "-q", "/srv/e2e/servingd_new_amd64.deb"],
        check=False,
        timeout=600,
    )
    assert r.returncode == 0, f"install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert box.run(["systemctl", "is-enabled", "servingd"], check=False).stdout.strip() == "enabled"
    _wait_serving(box)
    assert _file(box, CONFIG).endswith(ADMIN_EDIT)


def test_purge_keeps_the_admins_models_and_says_so(box: Container) -> None:
    r = box.run(["apt-get", "purge", "-y", "-q", "servingd"], check=False, timeout=300)
    assert r.returncode == 0, f"purge failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert f"purge kept the models in {MODELS}" in r.stderr + r.stdout
    for path in ("/etc/servingd", "/var/cache/servingd", "/usr/lib/servingd"):
        assert not _exists(box, path), path
    kept = box.sh(f"find {MODELS} -maxdepth 2 -printf '%u %p\\n' | sort").stdout.splitlines()
    assert kept == [
        f"root {MODELS}",
        f"root {MODELS}/half_plus_two",
        f"root {MODELS}/half_plus_two/1",
    ], kept
    assert box.sh("ls -A /var/lib/servingd").stdout.split() == ["models"]
    assert box.run(["getent", "passwd", "servingd"], check=False).returncode != 0
    assert box.sh("find /etc/systemd -xtype l").stdout.split() == []
