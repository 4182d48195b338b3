"""`--file_system_poll_wait_seconds=0` (one poll, as TF Serving): a version whose files
changed within the settle time before that poll (a copy just finished) is waited for until
it settles, then loaded, and READY comes after it, not before with nothing serving."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.servingd_process import ServingdProcess


def test_a_version_written_just_before_the_only_poll_is_loaded_before_ready(
    testdata: Path, tmp_path: Path
) -> None:
    base = tmp_path / "hp2"
    # shutil.copy, not copy2: fresh mtimes, as a copy that has just finished leaves them.
    shutil.copytree(testdata / "saved_model_half_plus_two_cpu", base, copy_function=shutil.copy)
    flags = [
        "--model_name=hp2",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0",
        "--version_settle_seconds=2",
    ]
    with ServingdProcess(flags, rest=False) as server:
        server.wait_healthy()
        log = server.output()
    assert "is still being written: waiting for it to settle" in log
    ready = next(line for line in log.splitlines() if "servingd: ready:" in line)
    assert "1 version available" in ready, log
    assert log.index("is AVAILABLE") < log.index(ready)
