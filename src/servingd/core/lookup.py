"""Finding the version a request asks for (latest, an exact version, or a label) and
taking a lease on it. Labels are `core/labels.py`'s; status is `core/model_status.py`'s."""

from __future__ import annotations

from servingd.core.errors import InvalidArgument
from servingd.core.handles import ServableHandle
from servingd.core.labels import VersionLabels
from servingd.core.manager import AspiredVersionsManager


def check_model_name(name: str) -> None:
    if not name:
        raise InvalidArgument("Missing model name in request (ModelSpec.name is empty)")


class ServableLookup:
    """Resolves (name, version | label | latest) to a handle, for every API."""

    def __init__(self, manager: AspiredVersionsManager, labels: VersionLabels | None = None):
        """`labels`: the server's labels (None: a set of its own, empty until set)."""
        self._manager = manager
        self.labels = labels or VersionLabels(manager.list_available_versions)

    def handle(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> ServableHandle:
        """A lease on the requested version; the caller must release it."""
        check_model_name(name)
        if label:
            version = self.labels.resolve(name, label)
        return self._manager.get_handle(name, version)
