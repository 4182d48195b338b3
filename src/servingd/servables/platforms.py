"""The runtimes a model's `platform` selects (TF Serving's model_platform values)."""

from __future__ import annotations

TENSORFLOW_PLATFORM = "tensorflow"  # a SavedModel (servingd.servables.saved_model)
TFLITE_PLATFORM = "tflite"  # model.tflite, run by LiteRT (servingd.servables.tflite)
PLATFORMS = (TENSORFLOW_PLATFORM, TFLITE_PLATFORM)
