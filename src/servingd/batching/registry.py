"""The batching parameter registry: which models are batched, with which parameters.

Every model's parameters come from the daemon's configuration (`set_parameters`: a model's
own section, the server-wide default, or FROM_VERSION); a FROM_VERSION model takes each
loaded version's own file (`VersionOverrides`, fed by ``version_parameters``). Batched
servables read `parameters_for` on every request, so a reload's new parameters apply to
the next batch without reloading the model.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping

from servingd.batching.parameters import BatchingParameters
from servingd.batching.scheduler import SharedBatchScheduler
from servingd.core.ids import ServableId


class FromVersion:
    """The type of FROM_VERSION."""

    def __repr__(self) -> str:
        return "FROM_VERSION"


# A model batched with the parameters its loaded version brought (batching_params.pbtxt,
# --enable_per_model_batching_parameters; see batching.version_parameters).
FROM_VERSION = FromVersion()


class VersionOverrides:
    """The per-version override: what each loaded version's batching_params.pbtxt holds,
    with the thread pool's size and name taken from the server-wide parameters (the pool
    is shared, as in TF Serving). Not thread-safe: the registry holds its lock around it."""

    def __init__(self) -> None:
        self._files: dict[ServableId, BatchingParameters] = {}
        self._pool: BatchingParameters | None = None
        # What `get` reads: replaced whole, never changed in place.
        self.effective: dict[ServableId, BatchingParameters] = {}

    def set_file(self, servable_id: ServableId, params: BatchingParameters | None) -> None:
        if params is None:
            self._files.pop(servable_id, None)
        else:
            self._files[servable_id] = params
        self._refresh()

    def set_pool(self, pool: BatchingParameters | None) -> None:
        self._pool = pool
        self._refresh()

    def _refresh(self) -> None:
        self.effective = {i: self._with_pool(p) for i, p in self._files.items()}

    def _with_pool(self, params: BatchingParameters) -> BatchingParameters:
        if self._pool is None:
            return params
        return dataclasses.replace(
            params,
            num_batch_threads=self._pool.num_batch_threads,
            thread_pool_name=self._pool.thread_pool_name,
        )


class BatchingParameterRegistry:
    """Which models are batched, with which parameters; sizes the scheduler's thread pool
    to the largest num_batch_threads asked for."""

    def __init__(self, scheduler: SharedBatchScheduler) -> None:
        self.scheduler = scheduler
        self._params: dict[str, BatchingParameters | FromVersion] = {}
        self._versions = VersionOverrides()
        self._by_version: dict[ServableId, BatchingParameters] = {}
        self._lock = threading.Lock()

    def set_parameters(
        self,
        by_model: Mapping[str, BatchingParameters | FromVersion],
        pool: BatchingParameters | None = None,
    ) -> None:
        """Replaces every model's parameters (absent = not batched; FROM_VERSION = each
        version's own file); applies to the next batch. ``pool``: the server-wide
        parameters, whose thread count and pool name FROM_VERSION models use (as TF
        Serving). The shared thread pool gets the largest num_batch_threads asked for."""
        with self._lock:
            self._params = dict(by_model)
            self._versions.set_pool(pool)
            self._by_version = self._versions.effective
        threads = [
            p.num_batch_threads for p in by_model.values() if isinstance(p, BatchingParameters)
        ]
        if pool is not None and FROM_VERSION in by_model.values():
            threads.append(pool.num_batch_threads)
        if threads:
            self.scheduler.set_num_threads(max(threads))

    def set_version_parameters(
        self, servable_id: ServableId, params: BatchingParameters | None
    ) -> None:
        """What a loaded version's batching_params.pbtxt holds (None: it has none)."""
        with self._lock:
            self._versions.set_file(servable_id, params)
            self._by_version = self._versions.effective

    def parameters_for(self, servable_id: ServableId) -> BatchingParameters | None:
        """How requests to this version are batched; None: they are not."""
        # No lock: the setters swap in whole new dicts, and reading one reference is
        # atomic; this runs once per request on the event loop.
        params = self._params.get(servable_id.name)
        if isinstance(params, FromVersion):
            return self._by_version.get(servable_id)
        return params
