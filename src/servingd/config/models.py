"""The validated, immutable description of what the server should serve."""

from __future__ import annotations

from dataclasses import dataclass, field

from servingd.batching.parameters import BatchingParameters
from servingd.servables.platforms import PLATFORMS, TENSORFLOW_PLATFORM, TFLITE_PLATFORM
from servingd.sources.version_policy import Latest, ServableVersionPolicy

__all__ = ["PLATFORMS", "TENSORFLOW_PLATFORM", "TFLITE_PLATFORM", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """One model: where its versions live and how they are chosen and labelled."""

    name: str
    base_path: str
    platform: str = TENSORFLOW_PLATFORM
    version_policy: ServableVersionPolicy = field(default_factory=lambda: Latest(1))
    version_labels: dict[str, int] = field(default_factory=dict)
    # Per-model batching (servingd's extension): None = the server-wide setting applies.
    batching: BatchingParameters | None = None
    # Where its sessions run: None (TensorFlow's choice), "CPU", "GPU:0", ...
    device: str | None = None
    # TF Lite versions (platform tflite, or model.tflite found): interpreters (None: the
    # --num_tflite_* flags), LiteRT threads per interpreter (None: LiteRT's default), and
    # a delegate ("edgetpu" or a library path; servingd.servables.delegates).
    interpreters: int | None = None
    threads: int | None = None
    delegate: str | None = None
    xnnpack: bool = True  # TF Lite: LiteRT's XNNPACK CPU kernels (False: its reference ones)
    # Where it was defined (file:line), for messages; not part of equality, so moving a
    # definition to another line or file is not a change of the model.
    origin: str = field(default="", compare=False)
