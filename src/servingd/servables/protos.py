"""The TensorFlow wire messages the servables build (SignatureDefs, DataType)."""

from __future__ import annotations

from servingd.wire.tensorflow.core.framework import types_pb2
from servingd.wire.tensorflow.core.protobuf import meta_graph_pb2

__all__ = ["meta_graph_pb2", "types_pb2"]
