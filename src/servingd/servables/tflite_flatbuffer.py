"""What servingd reads from a TF Lite flatbuffer itself, without building an interpreter.

The SignatureDef map that TensorFlow's ``tflite::SetSignatureDefMap`` stores in a model
(tensorflow/lite/tools/signature/signature_def_util.cc): a ``Metadata`` entry named
``signature_defs_metadata`` whose buffer is a FlexBuffer map of signature key ->
serialized ``tensorflow.SignatureDef``. TF Serving serves those signatures when they are
there (tflite_session.cc).
"""

from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema
from flatbuffers import flexbuffers

from servingd.core import errors

SIGNATURE_DEFS_METADATA_NAME = b"signature_defs_metadata"
# Every TF Lite flatbuffer carries this file identifier at bytes 4..8.
TFLITE_FILE_IDENTIFIER = b"TFL3"


def serialized_signature_defs(model: bytes) -> dict[str, bytes]:
    """Signature key -> serialized SignatureDef, from the model's metadata; {} when it has
    none. InvalidArgument when the bytes are not a TF Lite model or the map is broken."""
    if model[4:8] != TFLITE_FILE_IDENTIFIER:
        raise errors.InvalidArgument("not a TF Lite model (no TFL3 file identifier)")
    try:
        root = schema.Model.GetRootAs(model, 0)
        for i in range(root.MetadataLength()):
            metadata = root.Metadata(i)
            if metadata is None or metadata.Name() != SIGNATURE_DEFS_METADATA_NAME:
                continue
            buffer = root.Buffers(metadata.Buffer())
            if buffer is None:
                raise errors.InvalidArgument("signature_defs_metadata names no buffer")
            data = buffer.DataAsNumpy()
            if isinstance(data, int):  # flatbuffers' answer for an empty vector
                raise errors.InvalidArgument("signature_defs_metadata's buffer is empty")
            entries = flexbuffers.GetRoot(data.tobytes()).AsMap
            return {
                key.AsKey: value.AsStringBytes
                for key, value in zip(entries.Keys, entries.Values, strict=True)
            }
    except (IndexError, ValueError, TypeError) as exc:
        raise errors.InvalidArgument(
            f"Invalid SignatureDefs found in TfLite model: {exc}"
        ) from None
    return {}
