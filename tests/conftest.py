"""Fixtures shared by every suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from support.figures import FIGURES, record_figure
from support.paths import tf_serving_testdata as _tf_serving_testdata
from support.testdata import project_testdata


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The project's own test models and configs, in TF Serving's testdata layout (exported
    by servingd's code once, cached under build/testdata)."""
    return project_testdata()


@pytest.fixture(scope="session")
def tf_serving_testdata() -> Path:
    """TF Serving's original test models and configs (../shared/testdata/tf_serving): the
    compatibility layer; tests using it skip, with the reason, when the folder is absent."""
    return _tf_serving_testdata()


@pytest.fixture
def figure() -> Callable[..., str]:
    """figure(name, key=value, ...) records one RELIABILITY line and returns it."""
    return record_figure


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
