"""What every loader of one version directory shares, whatever the runtime behind it:
TF Serving's resource estimate and the wording of load errors."""

from __future__ import annotations

import errno
import logging
import os
from typing import Generic, TypeVar

from servingd.core import errors
from servingd.core.ids import ServableId, model_fields
from servingd.core.loader import ResourceEstimate
from servingd.servables.servable import Servable
from servingd.servables.warmup import WarmupOptions, run_warmup

# TF Serving's resource estimate: total size of the files under the version dir x 1.2
# (util.cc, kResourceEstimateRAMMultiplier / kResourceEstimateRAMPadBytes).
RESOURCE_ESTIMATE_RAM_MULTIPLIER = 1.2
RESOURCE_ESTIMATE_RAM_PAD_BYTES = 0

log = logging.getLogger(__name__)


# A runtime's servable: its loader hands it out and closes it.
S = TypeVar("S", bound=Servable)


class VersionDirLoader(Generic[S]):
    """The part of a Loader (servingd.core.loader) that does not depend on the runtime:
    the estimate, error wording, and handing out / closing the servable that load() set."""

    def __init__(self, id: ServableId, path: str, warmup: WarmupOptions | None = None) -> None:
        """``warmup`` None or disabled: no warmup (``--enable_model_warmup=false``)."""
        self.id = id
        self.path = path
        self.warmup = warmup
        self._servable: S | None = None

    def _check_not_loaded(self) -> None:
        if self._servable is not None:
            raise errors.FailedPrecondition(f"Servable {self.id} is already loaded")

    def _warm_up(self, servable: Servable) -> None:
        """Before AVAILABLE, as TF Serving: the first clients find a warm model."""
        if self.warmup is not None and self.warmup.enabled:
            run_warmup(servable, self.path, self.warmup)

    def servable(self) -> S:
        if self._servable is None:
            raise errors.FailedPrecondition(f"Servable {self.id} is not loaded")
        return self._servable

    def unload(self) -> None:
        servable, self._servable = self._servable, None
        if servable is not None:
            servable.close()
            log.info("Unloaded servable %s", self.id, extra=model_fields(self.id))

    def _fail(self, cls: type[errors.ServingError], cause: object) -> errors.ServingError:
        return cls(f"Loading servable: {self.id} from {self.path} failed: {cause}")

    def estimate_resources(self) -> ResourceEstimate:
        """TF Serving's estimate: bytes of all files under the version dir x 1.2."""
        total = 0
        walk_errors: list[OSError] = []
        if not os.path.isdir(self.path):
            raise self._fail(errors.NotFound, "the version directory does not exist")
        for root, _dirs, files in os.walk(self.path, onerror=walk_errors.append):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError as exc:
                    walk_errors.append(exc)
        if walk_errors:
            raise self._os_error(walk_errors[0])
        ram = int(total * RESOURCE_ESTIMATE_RAM_MULTIPLIER) + RESOURCE_ESTIMATE_RAM_PAD_BYTES
        return ResourceEstimate(ram_bytes=ram)

    def _os_error(self, exc: OSError) -> errors.ServingError:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return self._fail(errors.NotFound, exc)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return self._fail(errors.PermissionDenied, exc)
        return self._fail(errors.Unknown, exc)
