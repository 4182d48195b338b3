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


def test_a_fresh_export_is_backdated_past_the_settle_time(tmp_path: object) -> None:
    import time
    from pathlib import Path

    tree = Path(str(tmp_path)) / "mlp"
    (tree / "1" / "variables").mkdir(parents=True)
    (tree / "1" / "saved_model.pb").write_bytes(b"x")
    run.backdate(tree)
    newest = max(p.stat().st_mtime for p in (tree, *tree.rglob("*")))
    assert newest < time.time() - 30  # a daemon's single poll finds it settled
