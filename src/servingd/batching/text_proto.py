"""`--batching_parameters_file`: TF Serving's BatchingParameters text proto.

The tensorflow-serving-api package ships no session_bundle_config_pb2; the message is
declared in protos/servingd/compat/tf_serving_config.proto with TF Serving's names and
numbers, so files written for tensorflow_model_server parse unchanged:

    max_batch_size { value: 64 }
    batch_timeout_micros { value: 2000 }
    allowed_batch_sizes: 16
    allowed_batch_sizes: 64
"""

from __future__ import annotations

from servingd.batching.parameters import BatchingParameters, batching_parameters_from_proto
from servingd.compat.tf_serving_config_pb2 import BatchingParameters as BatchingParametersProto
from servingd.core.config_error import ConfigError
from servingd.core.text_proto import parse_text_proto

# TF Serving's only padding policy that this scheduler implements (pad up to the next
# allowed batch size).
_SUPPORTED_PADDING_POLICIES = ("", "PAD_UP")


def load_batching_parameters_file(path: str) -> BatchingParameters:
    """Parses and validates the file; ConfigError names the file (and line when known)."""
    proto = parse_text_proto(path, BatchingParametersProto())
    if proto.batch_padding_policy not in _SUPPORTED_PADDING_POLICIES:
        raise ConfigError(
            path,
            None,
            f"batch_padding_policy {proto.batch_padding_policy!r} is not supported "
            "(only PAD_UP, TF Serving's default)",
        )
    return batching_parameters_from_proto(proto, path)
