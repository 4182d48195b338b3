"""Version labels (TF Serving's `version_labels`): a name per model that maps to a version.

TF Serving's rule: a label may only point at a version that is AVAILABLE, unless the server
runs with `allow_version_labels_for_unavailable_models` (then only a label that is *new* may
point at a version not yet available, so that a rollout can be prepared ahead of the load).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from servingd.core.errors import FailedPrecondition, InvalidArgument


class VersionLabels:
    """Each model's labels; thread-safe (set from the loop and from state events)."""

    def __init__(self, available_versions: Callable[[str], Iterable[int]]) -> None:
        """`available_versions(name)`: the model's AVAILABLE versions (the manager's)."""
        self._available_versions = available_versions
        self._labels: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def set(self, name: str, labels: Mapping[str, int], *, allow_unavailable: bool = False) -> None:
        """Replace the labels of one model, all or nothing.

        Raises FailedPrecondition when a label would point at a version that is not
        AVAILABLE (TF Serving's rule, relaxed for new labels by `allow_unavailable`).
        """
        available = set(self._available_versions(name))
        with self._lock:
            current = self._labels.get(name, {})
            for label, version in labels.items():
                if version in available:
                    continue
                if current.get(label) == version:
                    continue  # unchanged labels stay valid while their version reloads
                if allow_unavailable and label not in current:
                    continue
                raise FailedPrecondition(
                    f"Request to assign label to version {version} of model {name}, which is "
                    "not currently available for inference; wait until the version is "
                    "AVAILABLE, or start with --allow_version_labels_for_unavailable_models"
                )
            if labels:
                self._labels[name] = dict(labels)
            else:
                self._labels.pop(name, None)

    def get(self, name: str) -> dict[str, int]:
        with self._lock:
            return dict(self._labels.get(name, {}))

    def forget(self, name: str) -> None:
        with self._lock:
            self._labels.pop(name, None)

    def resolve(self, name: str, label: str) -> int:
        with self._lock:
            version = self._labels.get(name, {}).get(label)
        if version is None:
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        return version
