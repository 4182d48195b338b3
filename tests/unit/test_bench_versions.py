"""make bench records what it measured: the commit and the versions that move the numbers."""

from __future__ import annotations

from importlib import metadata

from tests.bench import run


def test_the_machine_line_names_the_commit_and_grpcio_and_tensorflow() -> None:
    found = run._versions()
    assert found["grpcio"] == metadata.version("grpcio")
    assert "tensorflow-cpu" in found or "tensorflow" in found
    if (run.ROOT / ".git").exists():  # a checkout (CI's clone is one)
        assert found["commit"].split()[0].isalnum()  # a short hash, maybe "(uncommitted ...)"
