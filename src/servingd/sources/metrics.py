"""The sources' own series (no TF Serving equivalent)."""

from __future__ import annotations

from prometheus_client import Counter

from servingd.core.metrics import REGISTRY

VERSION_FALLBACKS = Counter(
    "servingd_version_fallbacks",
    "Times the newest version of a model failed to load and an older one was served "
    "instead (latest policy, fall_back_to_loadable_version on).",
    ["model_name"],
    registry=REGISTRY,
)
