"""grpc.health.v1 as the daemon publishes it: one service per model (SERVING when it has
an AVAILABLE version) and the whole server (SERVING when every model is), following every
ServableState change.

Events come from manager threads; `schedule` runs on the loop (call_soon_threadsafe) and
coalesces a burst of changes into one publication plus, at most, one more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

from servingd.core.model_status import ModelStatus

OVERALL_HEALTH = ""  # grpc.health.v1: the empty service name is the whole server


class HealthTarget(Protocol):
    async def set_serving(self, service: str, serving: bool) -> None: ...


class HealthPublisher:
    def __init__(self, status: ModelStatus, model_names: Callable[[], Iterable[str]]) -> None:
        self._status = status
        self._model_names = model_names
        # The gRPC front end once it listens (None: nothing to publish to).
        self.target: HealthTarget | None = None
        self._task: asyncio.Future[None] | None = None
        self._dirty = False

    def schedule(self) -> None:
        """On the loop: publish soon (once more if a publication is running)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.update())
        else:
            self._dirty = True

    async def update(self) -> None:
        if self.target is None:
            return
        self._dirty = False
        ready = True
        for name in self._model_names():
            model_ready = self._status.is_ready(name)
            ready = ready and model_ready
            await self.target.set_serving(name, model_ready)
        await self.target.set_serving(OVERALL_HEALTH, ready)
        if self._dirty:  # states changed while we were publishing
            await self.update()
