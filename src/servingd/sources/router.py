"""Which VersionStore serves a base path: S3 for `s3://...`, local directories otherwise.

The S3 store (and boto3 with it) is built on the first `s3://` base path, never before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from servingd.sources.s3.options import is_s3_url
from servingd.sources.version_store import LocalStore, VersionStore


class StoreRouter:
    def __init__(self, local: LocalStore, make_s3: Callable[[], VersionStore]) -> None:
        self._local = local
        self._make_s3 = make_s3
        self._s3: VersionStore | None = None
        self._lock = threading.Lock()

    def __call__(self, base_path: str) -> VersionStore:
        if not is_s3_url(base_path):
            return self._local
        if self._s3 is None:
            with self._lock:
                if self._s3 is None:
                    self._s3 = self._make_s3()
        return self._s3

    def close(self) -> None:
        """Stops the S3 store's downloads in progress (they end at their next chunk)."""
        close = getattr(self._s3, "close", None)
        if close is not None:
            close()
