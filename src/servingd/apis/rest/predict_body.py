"""A REST :predict body in two steps: its signature name now, its tensors under the lease.

The signature name is needed to find the signature, and the signature's input dtypes to
build the tensors; `InferenceRunner.predict` calls `decode` with the signature of the
version it leased, so both come from the same version.

Plain numeric bodies take `numeric_json` (simdjson, no Python floats); everything else, and
anything that path declines, takes `json_tensors` (orjson), whose errors are TF Serving's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from servingd.apis.rest import json_tensors, numeric_json
from servingd.core.errors import InvalidArgument


class PredictBody:
    """A parsed :predict body. Raises InvalidArgument as TF Serving does for bad JSON."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._fast = numeric_json.parse(raw)
        self._parsed: Any = None
        # Set by a successful `decode`: instances (row format) or inputs (columnar).
        self.row_format = False
        if self._fast is not None:
            self.signature_name = self._fast.signature_name
            return
        self._parsed = _parse(raw)
        self.signature_name = self._parsed.get("signature_name", "")
        if not isinstance(self.signature_name, str):
            raise InvalidArgument("'signature_name' key must be a string value.")

    @property
    def fast(self) -> bool:
        """Whether the numeric fast path parsed the body (and will try to decode it)."""
        return self._fast is not None

    def decode(self, input_dtypes: Mapping[str, np.dtype[Any]]) -> dict[str, np.ndarray]:
        """The input tensors by alias, of the signature's dtypes. Call once."""
        fast, self._fast = self._fast, None
        if fast is not None:
            inputs = fast.decode(input_dtypes)
            if inputs is not None:
                self.row_format = fast.row_format
                return inputs
            self._parsed = _parse(self._raw)
        inputs, self.row_format = json_tensors.decode_predict_body(self._parsed, input_dtypes)
        return inputs


def _parse(raw: bytes) -> dict[str, Any]:
    body = json_tensors.loads(raw)
    if not isinstance(body, dict):
        raise InvalidArgument("JSON Value: request body is not an object")
    return body
