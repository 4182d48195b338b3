"""tests/bench/procs.py: a bench stopped by its PID still runs its clean-up."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_unwinds_the_bench_so_its_daemons_are_stopped(tmp_path: Path) -> None:
    mark = tmp_path / "cleaned-up"
    script = textwrap.dedent(
        f"""
        import sys, time, pathlib
        sys.path.insert(0, {str(ROOT)!r})
        from tests.bench import procs
        procs.exit_on_sigterm()
        try:
            print("ready", flush=True)
            time.sleep(120)
        finally:  # where a bench stops the daemons it started
            pathlib.Path({str(mark)!r}).write_text("stopped")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert mark.read_text() == "stopped"
