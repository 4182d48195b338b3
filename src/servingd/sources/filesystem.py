"""A Source that polls local model base paths for version directories.

TF Serving's FileSystemStoragePathSource, plus a guard against half-written versions: the
PollingSource (servingd.sources.polling, where the rules are described) over local
directories (servingd.sources.version_store.LocalStore).

    FileSystemSource(models, loader_factory, poll_wait_s=1.0, settle_s=1.0, clock=...,
                     fall_back=False)

The settle rule is a heuristic: a copy that keeps the source's mtimes (`cp -p`,
`rsync -t`) can look settled between two files. The reliable way to publish a version is
still to write it into a hidden directory next to the versions (`.tmp-124`, ignored here)
and to rename it to its number when complete: the rename is atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from servingd.sources.polling import LoaderFactory, PollingSource, SourceModelConfig

__all__ = ["FileSystemSource", "SourceModelConfig"]


class FileSystemSource(PollingSource):
    """A PollingSource over local directories only."""

    def __init__(
        self,
        models: Sequence[SourceModelConfig],
        loader_factory: LoaderFactory,
        poll_wait_s: float = 1.0,
        settle_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        fall_back: bool = False,
    ) -> None:
        super().__init__(models, loader_factory, poll_wait_s, settle_s, clock, fall_back=fall_back)
