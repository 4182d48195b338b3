"""Lines written to stderr when stderr is the journal carry their syslog priority."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.paths import REPO_ROOT


def run_with_journal_stderr(tmp_path: Path, *args: str, journal: bool) -> str:
    """Runs `args` with stderr on a file that JOURNAL_STREAM names (as systemd would)."""
    err = tmp_path / "stderr"
    with open(err, "wb") as sink:
        stat = os.fstat(sink.fileno())
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
        env.pop("JOURNAL_STREAM", None)
        if journal:
            env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
        subprocess.run(args, stderr=sink, env=env, timeout=120, check=False)
    return err.read_text()


def test_check_config_errors_are_err_priority_in_the_journal(tmp_path: Path) -> None:
    config = tmp_path / "servingd.yaml"
    config.write_text("grpc: {port: 8600}\nbogus_key: 1\n")
    command = (sys.executable, "-m", "servingd.daemon.main", "--check-config", f"--config={config}")
    text = run_with_journal_stderr(tmp_path, *command, journal=True)
    [line] = [ln for ln in text.splitlines() if "configuration refused" in ln]
    assert line.startswith("<3>") and f"{config}:2" in line, text
    plain = run_with_journal_stderr(tmp_path, *command, journal=False)
    assert "configuration refused" in plain and "<3>" not in plain


def test_servingctl_errors_are_err_priority_in_the_journal(tmp_path: Path) -> None:
    config = tmp_path / "servingd.yaml"
    config.write_text("bogus_key: 1\n")
    command = (sys.executable, "-m", "servingd.cli.main", f"--config={config}", "check-config")
    text = run_with_journal_stderr(tmp_path, *command, journal=True)
    assert text.startswith("<3>servingctl: configuration refused"), text
