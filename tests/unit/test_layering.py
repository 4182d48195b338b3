"""The package map, enforced: every import under src/servingd points down the layers.

    wire, compat (generated) < core < sources, servables < batching < apis < config
    < daemon < cli

A package imports only packages of a lower rank (sources and servables share one and do
not import each other); `tools` may import the runtime packages, and nothing but the tests
imports `tools`. Inside `apis`, the gRPC and REST front ends do not import each other.
Every import counts: module level, inside functions, and under TYPE_CHECKING. Besides,
core and sources stay pure Python: no TensorFlow, gRPC or aiohttp, even indirectly.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "servingd"
FORBIDDEN = ("tensorflow", "grpc", "aiohttp")

RANK = {
    "wire": 0,
    "compat": 0,
    "core": 1,
    "sources": 2,
    "servables": 2,
    "batching": 3,
    "apis": 4,
    "config": 5,
    "daemon": 6,
    "cli": 7,
    "tools": 8,
}
# Sub-packages that are siblings: neither imports the other.
SIBLINGS = ({"apis.grpc", "apis.rest"},)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every servingd import in the file, at any depth."""
    name = module_name(path)
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from servingd.apis import grpc` names a module: check x.y, not only x.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, m) for line, m in found if m == "servingd" or m.startswith("servingd.")]


def top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def violations() -> tuple[list[str], int]:
    bad: list[str] = []
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        own = top(source)
        if own in (None, "wire", "compat"):
            continue  # generated code, and the root package's __init__
        where = path.relative_to(SRC)
        for line, target in imported_modules(path):
            other = top(target)
            if other is None:
                continue
            checked += 1
            if other == own:
                for pair in SIBLINGS:
                    mine = next((s for s in pair if source.startswith(f"servingd.{s}.")), None)
                    theirs = next((s for s in pair if target.startswith(f"servingd.{s}")), None)
                    if mine and theirs and mine != theirs:
                        bad.append(f"{where}:{line}: {mine} imports its sibling {target}")
                continue
            if other == "tools":
                bad.append(f"{where}:{line}: only tests import tools ({target})")
            elif RANK[other] >= RANK[own]:
                bad.append(f"{where}:{line}: {own} (rank {RANK[own]}) imports {target}")
    return bad, checked


def test_every_import_points_down_the_package_order() -> None:
    bad, checked = violations()
    assert checked > 300  # the walk found the imports (a broken parse finds none)
    assert bad == []


def test_every_package_has_a_rank() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(RANK)


def test_core_and_sources_import_no_heavy_frameworks() -> None:
    modules = sorted(
        module_name(p)
        for package in ("core", "sources")
        for p in (PACKAGE / package).rglob("*.py")
        if p.stem != "__init__"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert len(modules) >= 10
    assert result.stdout.strip() == ""
