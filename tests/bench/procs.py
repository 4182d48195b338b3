"""Process bookkeeping for the bench: CPU and RSS of a process tree from /proc, stop by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit (status 143) in the main thread: a bench stopped by its PID
    then unwinds its `finally` blocks and stops the daemons it started, instead of leaving
    them running (Python's default for SIGTERM ends the process on the spot)."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def _children() -> dict[int, list[int]]:
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        by_parent.setdefault(ppid, []).append(int(entry.name))
    return by_parent


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (MLServer's workers, for instance)."""
    by_parent = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(by_parent.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process tree, so far."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def rss_mib(pid: int) -> float:
    """Resident memory of the process tree (VmRSS summed), MiB."""
    total_kib = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process and, after it, any of its descendants still there (by PID)."""
    if proc.poll() is not None:
        return
    pids = tree(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    for p in pids[1:]:
        while time.monotonic() < deadline and Path(f"/proc/{p}").exists():
            time.sleep(0.05)
        if Path(f"/proc/{p}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
