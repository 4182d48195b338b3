"""Generates src/servingd/wire/ from protos/tf_serving_wire.binpb (`make protos` runs it).

The modules keep the .proto file names and packages of TF Serving and TensorFlow (so the
official client sees the same messages) under the Python package ``servingd.wire``
(``servingd.wire.tensorflow_serving.apis.predict_pb2``), so that importing them does not run
``tensorflow/__init__.py``. Each file registers in protobuf's default pool under its own
name, with the same bytes as the official module: whichever is imported first, the other
finds it there and both use the same message classes.

    .venv/bin/python scripts/wire_protos.py [OUTDIR]     # default: src
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTORS = ROOT / "protos" / "tf_serving_wire.binpb"
PACKAGE = "servingd.wire"
TOP_LEVEL = ("tensorflow_serving", "tensorflow", "xla")
SERVICES = ("tensorflow_serving/apis/prediction_service.proto",
            "tensorflow_serving/apis/model_service.proto")  # fmt: skip
_IMPORT = re.compile(r"^(from|import) (" + "|".join(TOP_LEVEL) + r")([. ])", re.MULTILINE)
_MODULE_NAME = re.compile(r"'((?:" + "|".join(TOP_LEVEL) + r")\.[\w.]+_pb2)'")


def generate(out_root: Path) -> list[Path]:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(DESCRIPTORS.read_bytes())
    names = [f.name for f in fds.file]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"--descriptor_set_in={DESCRIPTORS}",
             f"--python_out={tmp}", *names],
            check=True,
        )  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"--descriptor_set_in={DESCRIPTORS}",
             f"--grpc_python_out={tmp}", *SERVICES],
            check=True,
        )  # fmt: skip
        target = out_root / Path(*PACKAGE.split("."))
        written = []
        for source in sorted(Path(tmp).rglob("*.py")):
            relative = source.relative_to(tmp)
            text = _IMPORT.sub(rf"\1 {PACKAGE}.\2\3", source.read_text())
            text = _MODULE_NAME.sub(rf"'{PACKAGE}.\1'", text)
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
        for directory in {p.parent for p in written} | {target}:
            while directory != target.parent:
                init = directory / "__init__.py"
                if not init.exists():
                    init.write_text("")
                directory = directory.parent
    return written


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src"
    print(f"{len(generate(out))} files under {out / Path(*PACKAGE.split('.'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
