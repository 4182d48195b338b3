"""Writes protos/tf_serving_wire.binpb: TF Serving's and TensorFlow's wire .proto files that
servingd serves, as the FileDescriptorSet the pinned tensorflow-serving-api and tensorflow
wheels were built from (their generated modules carry each file's descriptor).

    .venv/bin/python scripts/wire_descriptors.py     # then: make protos

The wheels ship no .proto sources; taking the descriptors from their modules gives files
byte-identical to theirs, which is what lets servingd's generated modules and the official
ones share one protobuf descriptor pool (a file name registered twice must be the same).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

OUT = Path(__file__).resolve().parents[1] / "protos" / "tf_serving_wire.binpb"
# What servingd uses; their imports come along.
MODULES = (
    "tensorflow_serving.apis.prediction_service_pb2",
    "tensorflow_serving.apis.model_service_pb2",
    "tensorflow_serving.apis.prediction_log_pb2",
    "tensorflow_serving.config.model_server_config_pb2",
    "tensorflow.core.protobuf.meta_graph_pb2",
    "tensorflow.core.example.example_pb2",
)
# The well-known types come from protobuf itself.
PROVIDED_BY_PROTOBUF = "google/protobuf/"


def main() -> int:
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    order: list[str] = []

    def add(file_descriptor: object) -> None:
        name = file_descriptor.name  # type: ignore[attr-defined]
        if name in files or name.startswith(PROVIDED_BY_PROTOBUF):
            return
        for dependency in file_descriptor.dependencies:  # type: ignore[attr-defined]
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(file_descriptor.serialized_pb)  # type: ignore[attr-defined]
        files[name] = proto
        order.append(name)

    for module in MODULES:
        add(importlib.import_module(module).DESCRIPTOR)
    result = descriptor_pb2.FileDescriptorSet()
    result.file.extend(files[name] for name in order)
    OUT.write_bytes(result.SerializeToString())
    print(f"{OUT}: {len(order)} files")
    for name in order:
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
