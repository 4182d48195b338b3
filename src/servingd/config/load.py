"""The whole configuration: command line > servingd.yaml > built-in defaults.

`load_settings(argv)` is a pure function of the command line and the files it names, so
the daemon calls it again on SIGHUP with the same argv. It reads and validates everything
(servingd.yaml, every models.d drop-in, a TF Serving models.config) and either returns
complete ServerSettings or raises one ConfigError naming file:line: a configuration is
taken whole or not at all.

Models come from, in this order (a name defined twice is an error naming both places):
  1. the command line: --model_name/--model_base_path, or --model_config_file;
  2. servingd.yaml's model_config_file (unless --model_config_file was given);
  3. the drop-ins of models_dir (--models_dir, else servingd.yaml's models_dir).

S3 credentials come from servingd.yaml's s3.credentials_file, else from systemd's
$CREDENTIALS_DIRECTORY/s3 when the unit passes one; either file is refused when every
user can read it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from servingd.batching.parameters import BatchingParameters
from servingd.config.errors import ConfigError
from servingd.config.flags import explicit_flags, parse_flags
from servingd.config.model_files import load_models_dir
from servingd.config.model_server_config import load_model_server_config
from servingd.config.models import ModelConfig
from servingd.config.servingd_yaml import DEFAULT_MODEL_ROOT, read_servingd_yaml
from servingd.config.settings import ServerSettings, check_listeners, settings_from_flags
from servingd.config.yaml_nodes import load_yaml_file
from servingd.sources.s3.options import (
    is_s3_url,
    load_s3_credentials,
    parse_s3_url,
    systemd_credentials_file,
)


def load_settings(argv: Sequence[str] | None) -> ServerSettings:
    args = parse_flags(argv)
    given = explicit_flags(argv)
    settings = settings_from_flags(args)
    cli_models = list(settings.models)
    changes: dict[str, Any] = {}
    enable_batching: bool | None = None
    yaml_batching: BatchingParameters | None = None
    device: str | None = None
    model_root = DEFAULT_MODEL_ROOT
    if args.config:
        root = load_yaml_file(args.config)
        config = read_servingd_yaml(root)
        for name, item in config.settings.items():
            if item.flag and item.flag in given:
                continue  # the command line wins
            if name == "model_root":
                model_root = item.value or DEFAULT_MODEL_ROOT
            else:
                changes[name] = item.value
        enable_batching = config.enable_batching
        yaml_batching = config.batching
        device = config.device
    # Batching: --enable_batching (with --batching_parameters_file) decides when given;
    # else servingd.yaml's enable_batching with its batching: parameters.
    if "enable_batching" in given:
        if args.enable_batching and "batching_parameters_file" not in given and yaml_batching:
            changes["batching"] = yaml_batching
    else:
        changes["batching"] = (yaml_batching or BatchingParameters()) if enable_batching else None
    changes["model_root"] = model_root
    settings = dataclasses.replace(settings, **changes)

    models = cli_models
    if settings.model_config_file and "model_config_file" not in given:
        models = [*models, *load_model_server_config(settings.model_config_file)]
    if settings.models_dir:
        models = [*models, *load_models_dir(settings.models_dir, model_root, device, yaml_batching)]
    settings = dataclasses.replace(settings, models=tuple(_unique(models)))
    _check_s3_base_paths(settings.models)
    # Read even with no s3:// model yet: S3 settings apply on restart only, and a model
    # added later by a reload must find the keys the service started with.
    if settings.s3_credentials is None:
        credential = systemd_credentials_file(os.environ)
        if credential:
            settings = dataclasses.replace(settings, s3_credentials=load_s3_credentials(credential))
    check_listeners(settings, args.config or "command line")
    if not settings.models and not settings.models_dir and not settings.model_config_file:
        raise ConfigError(
            args.config or "command line",
            None,
            "no models configured: set models_dir or model_config_file, or give --model_base_path",
        )
    return settings


def _check_s3_base_paths(models: Sequence[ModelConfig]) -> None:
    for model in models:
        if is_s3_url(model.base_path):
            try:
                parse_s3_url(model.base_path)
            except ValueError as exc:
                path, line = _split_origin(model.origin or "command line")
                raise ConfigError(path, line, f"model {model.name}: {exc}") from None


def _unique(models: Sequence[ModelConfig]) -> list[ModelConfig]:
    seen: dict[str, ModelConfig] = {}
    for model in models:
        if model.name in seen:
            path, line = _split_origin(model.origin or "configuration")
            raise ConfigError(
                path,
                line,
                f"model {model.name!r} is defined twice: here and in "
                f"{seen[model.name].origin or 'the command line'}",
            )
        seen[model.name] = model
    return list(seen.values())


def _split_origin(origin: str) -> tuple[str, int | None]:
    """A model's origin ("FILE:LINE", "FILE" or "command line") as ConfigError's file and line,
    so the journal's CONFIG_FILE= field holds the file name alone."""
    path, sep, line = origin.rpartition(":")
    if sep and line.isdigit():
        return path, int(line)
    return origin, None
