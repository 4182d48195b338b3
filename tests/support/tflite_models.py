"""The project's own models in both forms: SavedModel, and TF Lite converted from it."""

from __future__ import annotations

from pathlib import Path

from servingd.tools.export_models import export_half_plus_two, export_small_cnn, export_tflite

# model name -> (exporter of the SavedModel it comes from, int8 quantization)
SAVED_MODELS = {"half_plus_two": export_half_plus_two, "small_cnn": export_small_cnn}
TFLITE_MODELS = {
    "half_plus_two_tflite": ("half_plus_two", False),
    "small_cnn_tflite": ("small_cnn", False),
    "small_cnn_int8_tflite": ("small_cnn", True),
}


def export_all(root: Path) -> dict[str, Path]:
    """Every model as a base path (version 1 inside): the SavedModels and their TF Lite
    conversions."""
    bases = {}
    for name, export in SAVED_MODELS.items():
        export(root / name / "1")
        bases[name] = root / name
    for name, (source, int8) in TFLITE_MODELS.items():
        export_tflite(root / source / "1", root / name / "1", int8=int8)
        bases[name] = root / name
    return bases


def model_config(
    bases: dict[str, Path], path: Path, platform: dict[str, str] | None = None
) -> Path:
    """A ModelServerConfig text file serving every model of `bases`."""
    platform = platform or {}
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{base}" '
        f'model_platform: "{platform.get(name, "tensorflow")}" }}\n'
        for name, base in bases.items()
    )
    path.write_text(f"model_config_list {{\n{entries}}}\n")
    return path
