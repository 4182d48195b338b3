"""Where things are: the repo, TF Serving's original test data (../shared, optional)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TF_SERVING_TESTDATA = REPO_ROOT.parent / "shared" / "testdata" / "tf_serving"


def tf_serving_testdata() -> Path:
    """TF Serving's original test models; skips the test (with the reason) when absent."""
    if not TF_SERVING_TESTDATA.is_dir():
        pytest.skip(
            f"TF Serving's original test models are not at {TF_SERVING_TESTDATA}: this "
            "compatibility check needs ../shared beside the clone (the rest of the suite "
            "runs on the project's own exports)"
        )
    return TF_SERVING_TESTDATA
