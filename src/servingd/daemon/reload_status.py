"""The outcome of configuration reloads, as GET /v1/servingd/reload reports it.

Contract: `generation` counts finished reloads since start (0: none yet). While one runs,
`state` is "reloading"; when it ends, `generation` grows by one and `result` says how it
went: "ok", "refused" (invalid config; nothing changed, the running config stays) or
"applied_with_errors" (applied, but e.g. a version label could not be set). `servingctl
reload` reads the generation and `pid`, sends SIGHUP and waits for the next finished
generation.
Read and written on the event loop only.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

OK = "ok"
REFUSED = "refused"
APPLIED_WITH_ERRORS = "applied_with_errors"

# How long a reload (SIGHUP, models.config polled or HandleReloadConfigRequest) waits for
# its added and changed models to settle before it reports.
RELOAD_SETTLE_TIMEOUT_S = 600.0


@dataclass
class ReloadStatus:
    generation: int = 0
    state: str = "idle"
    result: str | None = None
    message: str = ""
    started: float | None = None
    finished: float | None = None
    pid: int = field(default_factory=os.getpid)  # whom to send SIGHUP

    def begin(self) -> None:
        self.state = "reloading"
        self.started = time.time()

    def finish(self, result: str, message: str) -> None:
        self.generation += 1
        self.state = "idle"
        self.result = result
        self.message = message
        self.finished = time.time()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
