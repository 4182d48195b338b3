"""--enable_per_model_batching_parameters: a SavedModel's own batching_params.pbtxt.

TF Serving's rule (bundle_factory_util.cc, GetPerModelBatchingParams): with batching on and
this flag set, a version whose directory holds `batching_params.pbtxt` (a BatchingParameters
text proto, like --batching_parameters_file) is batched with those parameters, except the
thread pool's size and name, which stay the server-wide ones because the pool is shared;
a version without the file is not batched; a file that does not parse fails the load.
servingd adds: a model with a batching section of its own (models.d/*.yaml, servingd.yaml)
keeps it, whatever its SavedModel ships.

`BatchingFileLoader` wraps a version's loader: it reads the file before the model loads
(so a bad file costs no TensorFlow load), tells the parameter registry what the version
brought once it is loaded, and forgets it when the version unloads.
"""

from __future__ import annotations

import os
from typing import Any

from servingd.batching.parameters import BatchingParameters
from servingd.batching.registry import BatchingParameterRegistry
from servingd.batching.text_proto import load_batching_parameters_file
from servingd.core.config_error import ConfigError
from servingd.core.errors import InvalidArgument
from servingd.core.ids import ServableId
from servingd.core.loader import Loader, ResourceEstimate

FILENAME = "batching_params.pbtxt"


def read_version_parameters(version_dir: str) -> BatchingParameters | None:
    """The version's batching_params.pbtxt, or None when it has none. Raises ConfigError
    (file and line) for a file that does not parse or holds invalid values."""
    path = os.path.join(version_dir, FILENAME)
    if not os.path.isfile(path):
        return None
    return load_batching_parameters_file(path)


class BatchingFileLoader:
    """A Loader that also reads the version's batching_params.pbtxt (see the module)."""

    def __init__(
        self,
        inner: Loader,
        servable_id: ServableId,
        path: str,
        registry: BatchingParameterRegistry,
    ) -> None:
        self._inner = inner
        self._id = servable_id
        self._path = path
        self._registry = registry

    def estimate_resources(self) -> ResourceEstimate:
        return self._inner.estimate_resources()

    def load(self) -> None:
        try:
            params = read_version_parameters(self._path)
        except ConfigError as exc:
            raise InvalidArgument(
                f"Loading servable: {self._id} from {self._path} failed: {exc}"
            ) from None
        self._inner.load()
        self._registry.set_version_parameters(self._id, params)

    def unload(self) -> None:
        self._registry.set_version_parameters(self._id, None)
        self._inner.unload()

    def servable(self) -> Any:
        return self._inner.servable()
