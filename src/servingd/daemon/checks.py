"""Checks of a whole configuration that need the machine (devices), run before it is used:
at startup, by --check_config, and before a reload takes effect."""

from __future__ import annotations

import os
from collections.abc import Sequence

from servingd.config.errors import ConfigError
from servingd.config.models import ModelConfig
from servingd.config.settings import ServerSettings
from servingd.servables.delegates import delegate_problem
from servingd.servables.devices import DeviceRequest, check_devices


def check_machine(
    settings: ServerSettings,
    models: Sequence[ModelConfig] | None = None,
    *,
    available: dict[str, int] | None = None,
) -> None:
    """Raises ConfigError when a model's device, TF Lite delegate or a GPU option cannot
    be honoured here."""
    models = settings.models if models is None else models
    for model in models:
        problem = model.delegate and delegate_problem(model.delegate)
        if problem:
            raise ConfigError(
                model.origin or "config",
                None,
                f"model {model.name}: TF Lite delegate {model.delegate!r} is not available "
                f"on this machine: {problem}",
            )
    check_devices(
        [DeviceRequest(m.name, m.device, m.origin) for m in models],
        gpu_memory_fraction=settings.per_process_gpu_memory_fraction,
        gpu_allow_growth=settings.gpu_allow_growth,
        available=available,
    )


def missing_base_paths(models: Sequence[ModelConfig]) -> list[str]:
    """Warnings, not errors: a base path that is not a directory now (it may appear later;
    the model serves nothing until it does)."""
    return [
        f"model {m.name}: base path {m.base_path} "
        + ("is not a directory" if os.path.exists(m.base_path) else "does not exist")
        + " (the model serves nothing until it does)"
        for m in models
        if not os.path.isdir(m.base_path)
    ]
