"""How a SavedModel version's TensorFlow Session is configured; needs no TensorFlow (the
ConfigProto is servingd.wire's, the same message class TensorFlow uses)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from servingd.core import errors
from servingd.wire.tensorflow.core.protobuf import config_pb2

# A model's `device`: CPU, GPU, GPU:N, TPU or TPU:N, any case (servables/devices.py too).
DEVICE_RE = re.compile(r"^(CPU|GPU|TPU)(?::(\d+))?$", re.IGNORECASE)
RUNTIMES = ("functions", "session")


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How one version's Session is configured (TF Serving's SessionBundleConfig, in part).

    device: None lets TensorFlow place ops (GPU when there is one); "CPU" hides GPUs from
    this session; "GPU" / "GPU:N" places the graph on that GPU (soft placement falls back
    to CPU for ops without a GPU kernel). gpu_memory_fraction 0 leaves TF's default.
    """

    tags: frozenset[str] = frozenset({"serve"})
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    device: str | None = None
    gpu_memory_fraction: float = 0.0
    allow_growth: bool = False
    # The loading thread's nice value (servingd.core.thread_priority): TensorFlow's compute
    # pools, created with the process's first Session, inherit it.
    thread_nice: int = 0
    # "functions": runs a client's cancel or deadline can stop (saved_model_functions);
    # "session": a tf.compat.v1.Session, stopped only by its timeout (saved_model).
    runtime: str = "functions"

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise errors.InvalidArgument(
                f"saved_model_runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
            )
        if self.device is not None and not DEVICE_RE.match(self.device):
            raise errors.InvalidArgument(
                f"device must be CPU, GPU, GPU:N, TPU or TPU:N, got {self.device!r}"
            )
        # gpu_memory_fraction is checked once, by the configuration (config/schema.py).
        # Parallelism is checked here too: TF Serving's flags take negative values.
        if self.intra_op_parallelism < 0 or self.inter_op_parallelism < 0:
            raise errors.InvalidArgument("parallelism settings must be >= 0 (0 = TF default)")

    @property
    def device_scope(self) -> str | None:
        """The graph device to pin the imported model to, or None to leave placement to TF."""
        m = DEVICE_RE.match(self.device or "")
        if m is None or m.group(1).upper() == "CPU":
            return None
        return f"/device:{m.group(1).upper()}:{m.group(2) or 0}"

    def config_proto(self) -> config_pb2.ConfigProto:
        config = config_pb2.ConfigProto(allow_soft_placement=True)
        config.intra_op_parallelism_threads = self.intra_op_parallelism
        config.inter_op_parallelism_threads = self.inter_op_parallelism
        if self.gpu_memory_fraction:
            config.gpu_options.per_process_gpu_memory_fraction = self.gpu_memory_fraction
        if self.allow_growth:
            config.gpu_options.allow_growth = True
        if self.device is not None and self.device.upper().startswith("CPU"):
            config.device_count["GPU"] = 0
        return config
