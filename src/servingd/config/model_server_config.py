"""TF Serving's ModelServerConfig text proto (`--model_config_file`) -> ModelConfig list.

Errors name the file and the line:column that TF's text parser reports.
"""

from __future__ import annotations

from typing import Any

from servingd.config.errors import ConfigError
from servingd.config.models import (
    PLATFORMS,
    TENSORFLOW_PLATFORM,
    TFLITE_PLATFORM,
    ModelConfig,
)
from servingd.core.text_proto import parse_text_proto
from servingd.sources.version_policy import All, Latest, ServableVersionPolicy, Specific
from servingd.wire.tensorflow_serving.config import model_server_config_pb2


def load_model_server_config(path: str) -> list[ModelConfig]:
    proto = parse_text_proto(path, model_server_config_pb2.ModelServerConfig())
    return models_from_proto(proto, path)


def models_from_proto(proto: Any, origin: str) -> list[ModelConfig]:
    """The models of a ModelServerConfig message (from a file or HandleReloadConfigRequest)."""
    which = proto.WhichOneof("config")
    if which == "custom_model_config":
        raise ConfigError(
            origin, None, "custom_model_config is not supported; use model_config_list"
        )
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for index, cfg in enumerate(proto.model_config_list.config):
        where = f"model_config_list.config[{index}]"
        if not cfg.name:
            raise ConfigError(origin, None, f"{where}: name must be set")
        if cfg.name in seen:
            raise ConfigError(origin, None, f"{where}: duplicate model name {cfg.name!r}")
        seen.add(cfg.name)
        if not cfg.base_path:
            raise ConfigError(origin, None, f"{where} ({cfg.name}): base_path must be set")
        platform = cfg.model_platform or TENSORFLOW_PLATFORM
        if platform not in PLATFORMS:
            raise ConfigError(
                origin,
                None,
                f"{where} ({cfg.name}): model_platform {platform!r} is not "
                f"supported; use {TENSORFLOW_PLATFORM!r} or {TFLITE_PLATFORM!r}",
            )
        models.append(
            ModelConfig(
                name=cfg.name,
                base_path=cfg.base_path,
                platform=platform,
                version_policy=_version_policy(cfg.model_version_policy),
                version_labels=dict(cfg.version_labels),
                origin=f"{origin} ({where})",
            )
        )
    return models


def _version_policy(policy: Any) -> ServableVersionPolicy:
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return All()
    if which == "specific":
        return Specific(frozenset(policy.specific.versions))
    if which == "latest":
        return Latest(policy.latest.num_versions or 1)
    return Latest(1)
