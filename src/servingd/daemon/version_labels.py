"""Applying the configured version_labels, and applying again those that had to wait.

A label may only point at an AVAILABLE version (TF Serving's rule, see core/labels.py). At
start (READY) or after a reload a labelled version may still be loading: its model's labels
are refused then, kept as pending, and applied again each time a version of that model
becomes AVAILABLE, until they hold (or the model's configuration changes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping

from servingd.core.errors import ServingError
from servingd.core.ids import model_fields
from servingd.core.labels import VersionLabels
from servingd.core.states import ManagerState, ServableState

log = logging.getLogger(__name__)


class LabelApplier:
    def __init__(self, labels: VersionLabels, allow_unavailable: Callable[[], bool]) -> None:
        """`allow_unavailable()`: --allow_version_labels_for_unavailable_models, now."""
        self._labels = labels
        self._allow_unavailable = allow_unavailable
        self._pending: dict[str, Mapping[str, int]] = {}
        self._lock = threading.Lock()

    def apply(self, models: Iterable[tuple[str, Mapping[str, int]]]) -> list[str]:
        """Sets each (model, labels); returns the refusals' messages (those stay pending)."""
        errors = []
        for name, labels in models:
            with self._lock:
                try:
                    self._labels.set(name, labels, allow_unavailable=self._allow_unavailable())
                except ServingError as exc:
                    self._pending[name] = labels
                    errors.append(str(exc))
                else:
                    self._pending.pop(name, None)
        return errors

    def forget(self, name: str) -> None:
        """The model is no longer served: its labels go, pending or not."""
        with self._lock:
            self._pending.pop(name, None)
            self._labels.forget(name)

    def pending(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: dict(labels) for name, labels in self._pending.items()}

    def on_state(self, event: ServableState) -> None:
        """A ServableState subscriber: a version became AVAILABLE, its model's pending
        labels may hold now. Quick and non-blocking, as the bus requires; subscribe it
        before the monitor, so that whoever sees AVAILABLE finds the labels set."""
        if event.manager_state is not ManagerState.AVAILABLE:
            return
        name = event.id.name
        with self._lock:
            labels = self._pending.get(name)
            if labels is None:
                return
            try:
                self._labels.set(name, labels, allow_unavailable=self._allow_unavailable())
            except ServingError:
                return  # another labelled version is still on its way
            del self._pending[name]
        log.info(
            "version labels of model %s applied now that version %d is AVAILABLE: %s",
            name,
            event.id.version,
            ", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
            extra=model_fields(event.id),
        )
