"""Each version's Loader, and TF Serving's precedence of batching parameters.

`VersionLoaders` is the source's loader factory: a version directory becomes a TF Lite or a
SavedModel loader (by the model's platform and what the directory holds), with the model's
placement and TF Lite settings, and its servable goes behind the batch scheduler
(`BatchedLoader`: whether a request is batched is the version's business, not the request
path's). `apply_batching` gives the registry every model's parameters.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence

from servingd.batching.batched_servable import BatchedLoader
from servingd.batching.parameters import BatchingParameters
from servingd.batching.registry import FROM_VERSION, BatchingParameterRegistry, FromVersion
from servingd.batching.submitter import BatchSubmitter
from servingd.batching.version_parameters import BatchingFileLoader
from servingd.config.models import ModelConfig
from servingd.config.settings import ServerSettings
from servingd.core.ids import ServableId
from servingd.core.loader import Loader
from servingd.daemon.gc_freeze import freeze_startup_objects
from servingd.daemon.heap_reuse import HeapReturningLoader
from servingd.servables.session_options import SessionOptions
from servingd.servables.tflite import TfLiteLoader, TfLiteOptions, loads_as_tflite
from servingd.servables.warmup import WarmupOptions

log = logging.getLogger(__name__)

SAVED_MODEL_MODULE = "servingd.servables.saved_model"


class VersionLoaders:
    """Builds the Loader of one version: call it with the version's id and directory.

    `settings` and `models` return the running ones (a reload replaces them); per-model
    settings (placement, TF Lite's) apply from the next version load. TensorFlow's session
    options and warmup are fixed by the settings at start (`started_with`).
    """

    def __init__(
        self,
        started_with: ServerSettings,
        settings: Callable[[], ServerSettings],
        models: Callable[[], Mapping[str, ModelConfig]],
        registry: BatchingParameterRegistry,
        submitter: BatchSubmitter,
    ) -> None:
        self._settings = settings
        self._models = models
        self._registry = registry
        self._submitter = submitter
        s = started_with
        self._session_options = SessionOptions(
            tags=s.saved_model_tags,
            intra_op_parallelism=s.intra_op_parallelism,
            inter_op_parallelism=s.inter_op_parallelism,
            gpu_memory_fraction=s.per_process_gpu_memory_fraction,
            allow_growth=s.gpu_allow_growth,
            thread_nice=s.compute_thread_nice,
            runtime=s.saved_model_runtime,
        )
        self._warmup = WarmupOptions(
            enabled=s.enable_model_warmup,
            num_request_iterations=s.num_request_iterations_for_warmup,
        )

    def __call__(self, servable_id: ServableId, path: str) -> Loader:
        settings = self._settings()
        model = self._models().get(servable_id.name)
        loader: Loader
        if loads_as_tflite(
            path,
            platform=model.platform if model is not None else "",
            prefer_tflite=settings.prefer_tflite_model,
        ):
            options = tflite_options(settings, model)
            loader = TfLiteLoader(servable_id, path, options, self._warmup)
        else:
            session = self._session_options
            if model is not None and model.device is not None:
                session = dataclasses.replace(session, device=model.device)
            loader = saved_model_loader_class()(servable_id, path, session, self._warmup)
        loader = BatchedLoader(loader, self._registry, self._submitter)
        if settings.per_model_batching_parameters:
            loader = BatchingFileLoader(loader, servable_id, path, self._registry)
        return HeapReturningLoader(loader)


def tflite_options(settings: ServerSettings, model: ModelConfig | None) -> TfLiteOptions:
    """A TF Lite model's options: its own, else the server-wide pools' interpreters."""
    interpreters = settings.num_tflite_pools * settings.num_tflite_interpreters_per_pool
    if model is None:
        return TfLiteOptions(interpreters=interpreters)
    return TfLiteOptions(
        interpreters=model.interpreters or interpreters,
        threads=model.threads,
        delegate=model.delegate,
        xnnpack=model.xnnpack,
    )


def batching_parameters(
    settings: ServerSettings, model: ModelConfig
) -> BatchingParameters | FromVersion | None:
    """A model's batching: its own section, else (batching on) each version's
    batching_params.pbtxt with --enable_per_model_batching_parameters, else the
    server-wide setting; None: not batched."""
    if model.batching is not None:
        return model.batching
    if settings.batching is not None and settings.per_model_batching_parameters:
        return FROM_VERSION
    return settings.batching


def apply_batching(
    registry: BatchingParameterRegistry, settings: ServerSettings, models: Sequence[ModelConfig]
) -> None:
    """Every model's batching parameters into the registry (the next batch uses them)."""
    by_model = {}
    for model in models:
        params = batching_parameters(settings, model)
        if params is not None:
            by_model[model.name] = params
    registry.set_parameters(by_model, pool=settings.batching)


def saved_model_loader_class() -> Callable[..., Loader]:
    """SavedModelLoader, importing TensorFlow the first time a SavedModel version is seen: a
    daemon whose models are all TF Lite never imports it. Its start-up objects are frozen
    then, as the daemon's own were at start (see gc_freeze)."""
    first = SAVED_MODEL_MODULE not in sys.modules
    module = importlib.import_module(SAVED_MODEL_MODULE)
    if first:
        log.info("TensorFlow imported for the first SavedModel version")
        freeze_startup_objects()
    loader: Callable[..., Loader] = module.SavedModelLoader
    return loader
