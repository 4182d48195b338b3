"""Finding the version a request asks for: latest, an exact version, or a label.

Labels (TF Serving's `version_labels`) map a name to a version per model. TF Serving's rule:
a label may only point at a version that is AVAILABLE, unless the server runs with
`allow_version_labels_for_unavailable_models` (then only a label that is *new* may point at
a version not yet available, so that a rollout can be prepared ahead of the load).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from servingd.core.errors import FailedPrecondition, InvalidArgument, NotFound
from servingd.core.handles import ServableHandle
from servingd.core.manager import AspiredVersionsManager
from servingd.core.monitor import ServableStateMonitor
from servingd.core.states import ManagerState, ServableState


class ServableLookup:
    """Resolves (name, version | label | latest) to a handle or to status, for every API."""

    def __init__(
        self,
        manager: AspiredVersionsManager,
        monitor: ServableStateMonitor,
        model_errors: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        """`model_errors`: models whose versions cannot be found right now, and why (the
        source's errors(): a base path that does not exist or cannot be read)."""
        self._manager = manager
        self._monitor = monitor
        self._model_errors = model_errors
        self._labels: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    # -- labels -------------------------------------------------------------------------
    def set_labels(
        self, name: str, labels: Mapping[str, int], *, allow_unavailable: bool = False
    ) -> None:
        """Replace the labels of one model, all or nothing.

        Raises FailedPrecondition when a label would point at a version that is not
        AVAILABLE (TF Serving's rule, relaxed for new labels by `allow_unavailable`).
        """
        available = set(self._manager.list_available_versions(name))
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

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            return dict(self._labels.get(name, {}))

    def forget(self, name: str) -> None:
        with self._lock:
            self._labels.pop(name, None)

    def resolve_label(self, name: str, label: str) -> int:
        with self._lock:
            version = self._labels.get(name, {}).get(label)
        if version is None:
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        return version

    # -- handles ------------------------------------------------------------------------
    def handle(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> ServableHandle:
        """A lease on the requested version; the caller must release it."""
        if not name:
            raise InvalidArgument("Missing model name in request (ModelSpec.name is empty)")
        if label:
            version = self.resolve_label(name, label)
        return self._manager.get_handle(name, version)

    # -- status -------------------------------------------------------------------------
    def version_states(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[ServableState]:
        """States of one model's versions, newest first, as GetModelStatus reports them."""
        if not name:
            raise InvalidArgument("Missing model name in request (ModelSpec.name is empty)")
        if label:
            version = self.resolve_label(name, label)
        if version is not None:
            state = self._monitor.get_versions(name).get(version)
            if state is None:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [state]
        versions = self._monitor.get_versions(name)
        if not versions:
            reason = self._model_errors().get(name)
            raise NotFound(
                f"Could not find any versions of model {name}" + (f": {reason}" if reason else "")
            )
        return [versions[v] for v in sorted(versions, reverse=True)]

    def model_error(self, name: str) -> str | None:
        """Why the model's versions cannot be found right now (its base path), if so."""
        return self._model_errors().get(name)

    def is_ready(self, name: str) -> bool:
        """True when the model has at least one AVAILABLE version."""
        return self.not_ready_reason(name) is None

    def not_ready_reason(self, name: str) -> str | None:
        """None when the model has an AVAILABLE version; else why it serves nothing: its
        base path, the newest failed version's error, or that it is still loading."""
        states = self._monitor.get_versions(name)
        if any(s.manager_state is ManagerState.AVAILABLE for s in states.values()):
            return None
        reason = self._model_errors().get(name)
        if reason:
            return reason
        failed = [states[v] for v in sorted(states, reverse=True) if states[v].error is not None]
        if failed:
            newest = failed[0]
            return f"version {newest.id.version} failed ({newest.manager_state.value}): " + str(
                newest.error
            )
        if not states:
            return "no versions found"
        return "loading"
