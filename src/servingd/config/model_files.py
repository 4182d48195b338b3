"""Model drop-ins: `/etc/servingd/models.d/*.yaml`, one model per file.

    name: half_plus_two                       # default: the file name without .yaml
    base_path: /var/lib/servingd/models/half_plus_two   # relative: under model_root;
                                              # or s3://BUCKET/PREFIX/MODEL
    platform: tensorflow                      # or tflite (model.tflite, LiteRT)
    version_policy: {latest: {num_versions: 2}}   # or: latest | all | {specific: [1, 2]}
    version_labels: {stable: 1, canary: 2}
    batching: {max_batch_size: 32, batch_timeout_micros: 2000}
    device: GPU:0
    interpreters: 2                           # TF Lite: calls run at once
    threads: 1                                # TF Lite: LiteRT threads per interpreter
    delegate: edgetpu                         # TF Lite: edgetpu or a delegate library path
    xnnpack: true                             # TF Lite: XNNPACK CPU kernels (default true)

Only files ending in `.yaml` are read, in name order; anything else in the directory
(`*.disabled`, `*.dpkg-dist`, editor backups) is ignored, so a drop-in is switched off by
renaming it. Every error names the file and the line of the offending key or value.
"""

from __future__ import annotations

import os
from typing import Any

from servingd.batching.parameters import (
    FIELD_NAMES,
    BatchingKeyError,
    BatchingParameters,
    batching_parameters_from_mapping,
)
from servingd.config.errors import ConfigError
from servingd.config.models import (
    PLATFORMS,
    TENSORFLOW_PLATFORM,
    TFLITE_PLATFORM,
    ModelConfig,
)
from servingd.config.yaml_nodes import Node, load_yaml_file
from servingd.core.errors import InvalidArgument
from servingd.sources.s3.options import is_s3_url, parse_s3_url
from servingd.sources.version_policy import All, Latest, ServableVersionPolicy, Specific

MODEL_KEYS = (
    "name",
    "base_path",
    "platform",
    "version_policy",
    "version_labels",
    "batching",
    "device",
    "interpreters",
    "threads",
    "delegate",
    "xnnpack",
)
DROP_IN_SUFFIX = ".yaml"


def drop_in_files(models_dir: str) -> list[str]:
    """The drop-ins of `models_dir`, sorted by name; a missing directory is an error."""
    try:
        names = os.listdir(models_dir)
    except OSError as exc:
        raise ConfigError(models_dir, None, f"cannot list models_dir: {exc.strerror}") from None
    return [
        os.path.join(models_dir, name)
        for name in sorted(names)
        if name.endswith(DROP_IN_SUFFIX) and not name.startswith(".")
    ]


def load_models_dir(
    models_dir: str,
    model_root: str,
    default_device: str | None,
    batching_base: BatchingParameters | None = None,
) -> list[ModelConfig]:
    """Every model of `models_dir`. A model's `batching:` keys left out take
    `batching_base` (servingd.yaml's batching:), else TF Serving's defaults."""
    models: list[ModelConfig] = []
    for path in drop_in_files(models_dir):
        root = load_yaml_file(path)
        if root is None:
            raise ConfigError(path, None, "empty model file (needs at least base_path)")
        models.append(model_from_node(root, model_root, default_device, batching_base))
    return models


def model_from_node(
    root: Node,
    model_root: str,
    default_device: str | None,
    batching_base: BatchingParameters | None = None,
) -> ModelConfig:
    fields = root.mapping("model", MODEL_KEYS)
    origin = f"{root.path}:{root.line}"
    if "name" in fields:
        name = fields["name"].str_("name")
    else:
        name = os.path.basename(root.path).removesuffix(DROP_IN_SUFFIX)
    if "base_path" not in fields:
        raise root.error(f"model {name}: base_path is required")
    base_path = fields["base_path"].str_("base_path")
    if is_s3_url(base_path):
        try:
            parse_s3_url(base_path)
        except ValueError as exc:
            raise fields["base_path"].error(f"model {name}: {exc}") from None
    elif not os.path.isabs(base_path):
        base_path = os.path.join(model_root, base_path)
    platform = TENSORFLOW_PLATFORM
    if "platform" in fields:
        platform = fields["platform"].str_("platform")
        if platform not in PLATFORMS:
            raise fields["platform"].error(
                f"model {name}: platform {platform!r} is not supported; "
                f"use {TENSORFLOW_PLATFORM!r} or {TFLITE_PLATFORM!r}"
            )
    policy: ServableVersionPolicy = Latest(1)
    if "version_policy" in fields:
        policy = version_policy_from_node(fields["version_policy"])
    labels: dict[str, int] = {}
    if "version_labels" in fields:
        for label, value in fields["version_labels"].mapping("version_labels").items():
            labels[label] = value.int_(f"version label {label!r}", minimum=0)
    batching = None
    if "batching" in fields and not fields["batching"].is_null():
        batching = batching_from_node(fields["batching"], batching_base)
    device = default_device
    if "device" in fields:
        device = fields["device"].optional_str("device") or None
    interpreters = threads = None
    if "interpreters" in fields:
        interpreters = fields["interpreters"].int_("interpreters", minimum=1)
    if "threads" in fields:
        threads = fields["threads"].int_("threads", minimum=1)
    delegate = fields["delegate"].optional_str("delegate") or None if "delegate" in fields else None
    xnnpack = fields["xnnpack"].bool_("xnnpack") if "xnnpack" in fields else True
    return ModelConfig(
        name=name,
        base_path=base_path,
        platform=platform,
        version_policy=policy,
        version_labels=labels,
        batching=batching,
        device=device,
        interpreters=interpreters,
        threads=threads,
        delegate=delegate,
        xnnpack=xnnpack,
        origin=origin,
    )


def version_policy_from_node(node: Node) -> ServableVersionPolicy:
    """`latest` | `all` | {latest: {num_versions: N}} | {all: {}} | {specific: [1, 2]}."""
    try:
        if not node.is_mapping():
            kind = node.choice("version_policy", ("latest", "all"))
            return All() if kind == "all" else Latest(1)
        choice = node.mapping("version_policy", ("latest", "all", "specific"))
        if len(choice) != 1:
            raise node.error("version_policy: give exactly one of latest, all, specific")
        ((kind, value),) = choice.items()
        if kind == "all":
            if not value.is_null():
                value.mapping("version_policy.all", ())
            return All()
        if kind == "latest":
            if value.is_null():
                return Latest(1)
            latest = value.mapping("version_policy.latest", ("num_versions",))
            if "num_versions" not in latest:
                return Latest(1)
            return Latest(latest["num_versions"].int_("num_versions", minimum=1))
        if value.is_mapping():  # TF Serving's shape: {specific: {versions: [1, 2]}}
            value = value.mapping("version_policy.specific", ("versions",)).get("versions", value)
        versions = [v.int_("version", minimum=0) for v in value.sequence("specific versions")]
        return Specific(frozenset(versions))
    except InvalidArgument as exc:
        raise node.error(f"version_policy: {exc.message}") from None


def batching_from_node(node: Node, base: BatchingParameters | None = None) -> BatchingParameters:
    """A `batching:` mapping -> BatchingParameters (keys left out: `base`, else TF
    Serving's defaults). Unknown keys are refused at their line; values are checked by
    servingd.batching's own reader, and its errors are placed at the offending key's line.
    """
    fields = node.mapping("batching", FIELD_NAMES)
    plain: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "allowed_batch_sizes":
            plain[key] = [item.value(key) for item in value.sequence(key)]
        else:
            plain[key] = value.value(f"batching.{key}")
    try:
        return batching_parameters_from_mapping(plain, node.path, base)
    except BatchingKeyError as exc:
        line = fields[exc.key].line if exc.key in fields else node.line
        raise ConfigError(node.path, line, exc.message) from None
    except ConfigError as exc:  # the parameters together break a rule: the mapping's line
        raise ConfigError(node.path, node.line, exc.message) from None
