"""Device placement checks: a config that asks for a device this machine lacks is refused
when the config is checked (startup, --check_config, reload), not at the first request.

Device names: "CPU", "GPU", "GPU:N", "TPU", "TPU:N" (case-insensitive); None leaves the
placement to TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from servingd.core.config_error import ConfigError
from servingd.servables.session_options import DEVICE_RE


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """One model's placement as configured."""

    model: str
    device: str | None
    origin: str


def local_devices() -> dict[str, int]:
    """How many GPUs and TPUs TensorFlow sees here: {"GPU": n, "TPU": m}."""
    import tensorflow as tf

    return {kind: len(tf.config.list_physical_devices(kind)) for kind in ("GPU", "TPU")}


def check_devices(
    requests: Sequence[DeviceRequest],
    *,
    gpu_memory_fraction: float = 0.0,
    gpu_allow_growth: bool = False,
    available: dict[str, int] | None = None,
) -> None:
    """Raises ConfigError naming the model, its origin and the device when a placement or a
    GPU option cannot be honoured on this machine. `available` defaults to local_devices()
    (queried only when something asks for a GPU or TPU)."""
    found = available

    def count(kind: str) -> int:
        nonlocal found
        if found is None:
            found = local_devices()
        return found.get(kind, 0)

    for request in requests:
        if request.device is None:
            continue
        match = DEVICE_RE.match(request.device)
        if match is None:
            raise ConfigError(
                request.origin or "config",
                None,
                f"model {request.model}: device {request.device!r} is not one of CPU, GPU, "
                "GPU:N, TPU, TPU:N",
            )
        kind = match.group(1).upper()
        if kind == "CPU":
            continue
        index = int(match.group(2) or 0)
        have = count(kind)
        if index >= have:
            seen = f"{have} {kind}(s) visible" if have else f"no {kind} visible"
            hint = (
                f"use a {kind} index below {have}, or CPU"
                if have
                else "place the model on CPU, or run it where the device exists"
            )
            raise ConfigError(
                request.origin or "config",
                None,
                f"model {request.model}: device {request.device} is not available on this "
                f"machine ({seen} to TensorFlow); {hint}",
            )
    if (gpu_memory_fraction or gpu_allow_growth) and count("GPU") == 0:
        which = (
            f"--per_process_gpu_memory_fraction={gpu_memory_fraction}"
            if gpu_memory_fraction
            else "--gpu_memory_allow_growth"
        )
        raise ConfigError(
            "command line",
            None,
            f"{which} needs a GPU, and TensorFlow sees none on this machine; remove it "
            "(CPU-only servers have no GPU memory to configure)",
        )
