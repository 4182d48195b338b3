"""What a version directory holds: the model files that make it a version.

Shared by the sources (a directory counts once it holds one) and the servables (which
runtime loads it); in core because those two packages do not import each other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
TFLITE_MODEL_FILE = "model.tflite"
MODEL_FILES = (*SAVED_MODEL_FILES, TFLITE_MODEL_FILE)


def has_model(path: str, files: Sequence[str] = MODEL_FILES) -> bool:
    """Whether the version directory holds one of `files` (a SavedModel or a TF Lite model)."""
    return any(os.path.isfile(os.path.join(path, f)) for f in files)
