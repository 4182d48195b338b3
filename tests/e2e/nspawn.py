"""A real systemd (PID 1 of a container) for end-to-end tests of the Debian package.

The recipe is the one verified on this machine kind (../shared/recipes/nspawn-systemd.sh):

- a bookworm tree made once with ``debootstrap --variant=minbase`` and cached;
- booted with ``systemd-nspawn -b --register=no --keep-unit --volatile=overlay`` (the cached tree
  is never written: every boot starts from the same clean system);
- driven with ``nsenter -t <init pid> -a`` (``machinectl`` and ``systemd-run -M`` do not work here);
- stopped by the PID of the nspawn process we started, never by name.

``--private-network`` gives the container its own loopback: the service's 127.0.0.1:8500/8501
cannot collide with a server on the host, and apt inside the container has no network at all.
That is why the package's Debian dependencies are installed into the cached tree beforehand
(``ensure_dependencies``), from the host's network, before any boot.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
ROOTFS_INCLUDE = "systemd,systemd-sysv,dbus,procps"
GUEST_ENV = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}


class NspawnError(RuntimeError):
    """The container could not be made, booted or driven."""


def _host_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise NspawnError("/etc/os-release names no VERSION_CODENAME")


# The Debian release the e2e tests run against (`make e2e DIST=trixie`): its package in
# build/deb/DIST, booted in a tree of that release. This machine's own release by default.
DIST = os.environ.get("SERVINGD_DIST") or _host_codename()


def _host_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYENV", "VIRTUAL_ENV"))}
    env["PATH"] = SYSTEM_PATH
    return env


def ensure_rootfs(rootfs: Path, *, suite: str = DIST) -> Path:
    """Debootstrap ``rootfs`` once (minbase + systemd); an existing tree is reused as it is.

    The tree is made next to its final place and renamed in one step, so an interrupted
    debootstrap never leaves a half tree that later runs would take for a cached one.
    """
    if (rootfs / "usr/lib/systemd/systemd").exists():
        return rootfs
    tmp = rootfs.with_name(rootfs.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={ROOTFS_INCLUDE}", suite, str(tmp)],
        check=True,
        env=_host_env(),
        stdout=subprocess.DEVNULL,
    )
    tmp.rename(rootfs)
    return rootfs


def deb_field(deb: Path, field: str) -> str:
    out = subprocess.run(
        ["dpkg-deb", "--field", str(deb), field], check=True, capture_output=True, text=True
    )
    return " ".join(out.stdout.split())


def ensure_dependencies(rootfs: Path, deb: Path) -> None:
    """Install the Debian dependencies of ``deb`` into the cached tree (not ``deb`` itself).

    Runs ``apt-get satisfy`` in a non-booted nspawn that shares the host's network, only
    when the package's Pre-Depends/Depends differ from those satisfied last time (a stamp
    beside the tree). Inside the booted container, ``apt-get install ./servingd.deb`` then
    has nothing to download.
    """
    wanted = ", ".join(d for d in (deb_field(deb, "Pre-Depends"), deb_field(deb, "Depends")) if d)
    stamp = rootfs.with_name(rootfs.name + ".depends")
    if stamp.exists() and stamp.read_text() == wanted:
        return
    script = (
        "set -e; apt-get update -q; "
        'apt-get satisfy -y -q --no-install-recommends "$1"; apt-get clean'
    )
    subprocess.run(
        [
            "systemd-nspawn",
            "-q",
            "-D",
            str(rootfs),
            "--register=no",
            "--keep-unit",
            "--pipe",
            "--setenv=DEBIAN_FRONTEND=noninteractive",
            "sh",
            "-c",
            script,
            "sh",
            wanted,
        ],
        check=True,
        env=_host_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    stamp.write_text(wanted)


class Container:
    """One booted systemd container on a volatile overlay of ``rootfs``.

    Use as a context manager: the container is stopped (by PID) on exit, also after a failure.
    """

    def __init__(
        self,
        rootfs: Path,
        *,
        bind_ro: Mapping[Path, str] = {},
        log_path: Path,
        boot_timeout: float = 60.0,
    ) -> None:
        self.rootfs = rootfs
        self.bind_ro = dict(bind_ro)
        self.log_path = log_path
        self.boot_timeout = boot_timeout
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.init_pid: int | None = None

    def __enter__(self) -> Container:
        try:
            self.boot()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # -- life ---------------------------------------------------------------------------

    def boot(self) -> None:
        args = [
            "systemd-nspawn",
            "-q",
            "-D",
            str(self.rootfs),
            "-b",
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            "--volatile=overlay",
            "--private-network",
            # nspawn names its runtime state (/run/systemd/nspawn/propagate/NAME) after the
            # machine, by default the tree's basename: two suites booting a "rootfs" at once
            # would collide. A name per test process keeps them apart.
            f"--machine=servingd-e2e-{os.getpid()}",
        ]
        args += [f"--bind-ro={host}:{guest}" for host, guest in self.bind_ro.items()]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._nspawn = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_host_env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + self.boot_timeout
        state = ""
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise NspawnError(
                    f"systemd-nspawn exited with {self._nspawn.returncode} while booting; "
                    f"its console is in {self.log_path}"
                )
            # Read again each time: nspawn's first child may be its short-lived outer child,
            # not the container's init (seen under load; a cached dead PID never boots).
            self.init_pid = self._child_of(self._nspawn.pid)
            if self.init_pid:
                r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
                state = r.stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.1)
        raise NspawnError(
            f"the container did not finish booting in {self.boot_timeout:.0f} s "
            f"(last state {state!r}); its console is in {self.log_path}"
        )

    @staticmethod
    def _child_of(pid: int) -> int | None:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def teardown(self, timeout: float = 30.0) -> None:
        """Power the container off through nspawn (SIGTERM), SIGKILL it if it hangs.

        The overlay and every mount of the container live in nspawn's own mount namespace:
        they go away with it, nothing is left on the host.
        """
        proc, self._nspawn, self.init_pid = self._nspawn, None, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
            proc.wait(timeout=timeout)

    # -- driving ------------------------------------------------------------------------

    def run(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120.0,
        input: str | bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside the container (all its namespaces, a clean environment)."""
        if self.init_pid is None:
            raise NspawnError("the container is not running")
        env = [f"{k}={v}" for k, v in GUEST_ENV.items()]
        cmd = ["nsenter", "-t", str(self.init_pid), "-a", "env", "-i", *env, *args]
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_host_env(),
            input=input.decode() if isinstance(input, bytes) else input,
        )
        if check and r.returncode != 0:
            raise NspawnError(
                f"in the container, {' '.join(args)!r} exited with {r.returncode}\n"
                f"stdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
            )
        return r

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], **kw)  # type: ignore[arg-type]

    def copy_in(self, src: Path, dest: str) -> None:
        """Copy the host directory ``src`` (its contents) to ``dest`` in the container."""
        if self.init_pid is None:
            raise NspawnError("the container is not running")
        self.run(["mkdir", "-p", dest])
        pack = subprocess.Popen(["tar", "-C", str(src), "-cf", "-", "."], stdout=subprocess.PIPE)
        try:
            unpack = subprocess.run(
                [
                    "nsenter",
                    "-t",
                    str(self.init_pid),
                    "-a",
                    "tar",
                    "--no-same-owner",
                    "-C",
                    dest,
                    "-xf",
                    "-",
                ],
                stdin=pack.stdout,
                capture_output=True,
                timeout=120,
            )
        finally:
            assert pack.stdout is not None
            pack.stdout.close()
            pack.wait()
        if pack.returncode or unpack.returncode:
            raise NspawnError(f"copying {src} to {dest} failed: {unpack.stderr.decode()[-2000:]}")

    def write_file(self, path: str, content: str) -> None:
        self.run(
            ["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path], input=content
        )
