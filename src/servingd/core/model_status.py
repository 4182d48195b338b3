"""What GetModelStatus, GET /v1/models, readiness and health report about a model: views
of the ServableState events (the monitor), the labels, and the source's errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from servingd.core.errors import NotFound
from servingd.core.labels import VersionLabels
from servingd.core.lookup import check_model_name
from servingd.core.monitor import ServableStateMonitor
from servingd.core.states import ManagerState, ServableState


class ModelStatus:
    def __init__(
        self,
        monitor: ServableStateMonitor,
        labels: VersionLabels,
        model_errors: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        """`model_errors`: models whose versions cannot be found right now, and why (the
        source's errors(): a base path that does not exist or cannot be read)."""
        self._monitor = monitor
        self.labels = labels
        self._model_errors = model_errors

    def version_states(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[ServableState]:
        """States of one model's versions, newest first, as GetModelStatus reports them."""
        check_model_name(name)
        if label:
            version = self.labels.resolve(name, label)
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
