"""Where a model's versions come from: the part of a Source that differs per storage.

Contract (servingd.sources.polling.PollingSource drives it):

    store.list_versions(model, base_path) -> {version: VersionEntry}
        The numbered version directories (or prefixes) under `base_path`. Raises
        StoreError (its message says why, e.g. "does not exist") when `base_path` cannot
        be listed right now; the source then keeps what is loaded.
    entry.location
        Identifies the version directory; a different location for the same number is a
        different version (it was replaced).
    entry.has_model() / entry.fingerprint()
        Whether it holds saved_model.pb(txt) or model.tflite; (what is in it, newest
        mtime in ns): the settle rule compares fingerprints across polls. fingerprint()
        may raise OSError.
    store.materialize(model, version, entry) -> local path
        A directory the loader can read. Local stores return `entry.location`; remote
        ones fetch the version whole first and raise FetchError when they cannot.
    store.cached_versions(base_path) -> {version: local path}
        Complete local copies kept from earlier runs (used when the store is unreachable
        before the first listing succeeded); {} for local stores.
    store.prune(base_path, keep)
        Deletes local copies of the versions not in `keep`; nothing for local stores.
    store.remote / poll_interval_s / settle_s
        Remote stores are polled on worker threads, each model on its own schedule, with
        backoff after errors; local ones on the source's poll thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from servingd.core.version_files import has_model
from servingd.sources.version_dirs import list_version_dirs

Fingerprint = tuple[tuple[str, int, int | str], ...]


class StoreError(Exception):
    """A base path cannot be listed; `reason` completes "Base path X of model M ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FetchError(Exception):
    """A version cannot be made local. `permanent`: it will not succeed again until the
    published version changes (a checksum mismatch), as opposed to a network error."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class VersionEntry(Protocol):
    @property
    def location(self) -> str: ...

    def has_model(self) -> bool: ...

    def fingerprint(self) -> tuple[Fingerprint, int]: ...


class VersionStore(Protocol):
    remote: bool
    poll_interval_s: float
    settle_s: float

    def list_versions(self, model: str, base_path: str) -> dict[int, VersionEntry]: ...

    def materialize(self, model: str, version: int, entry: VersionEntry) -> str: ...

    def cached_versions(self, base_path: str) -> dict[int, str]: ...

    def prune(self, base_path: str, keep: set[int]) -> None: ...


def fingerprint(path: str) -> tuple[Fingerprint, int]:
    """(relative path, size, mtime_ns) of everything under `path`, and the newest mtime_ns.

    Symlinked directories are not followed; symlinked files count with their target's
    size and mtime. Raises OSError if something cannot be read.
    """
    entries: list[tuple[str, int, int | str]] = []
    newest = os.stat(path).st_mtime_ns
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(path, relative)) as listing:
            for entry in listing:
                name = os.path.join(relative, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    stat = entry.stat(follow_symlinks=False)
                    entries.append((name + "/", -1, stat.st_mtime_ns))
                    pending.append(name)
                else:
                    stat = entry.stat()
                    entries.append((name, stat.st_size, stat.st_mtime_ns))
                newest = max(newest, stat.st_mtime_ns)
    entries.sort()
    return tuple(entries), newest


@dataclass(frozen=True, slots=True)
class LocalEntry:
    location: str

    def has_model(self) -> bool:
        return has_model(self.location)

    def fingerprint(self) -> tuple[Fingerprint, int]:
        return fingerprint(self.location)


class LocalStore:
    """Version directories on a local (or mounted) file system."""

    remote = False

    def __init__(self, poll_interval_s: float, settle_s: float) -> None:
        self.poll_interval_s = poll_interval_s
        self.settle_s = settle_s

    def list_versions(self, model: str, base_path: str) -> dict[int, VersionEntry]:
        try:
            dirs = list_version_dirs(base_path)
        except FileNotFoundError:
            raise StoreError("does not exist") from None
        except NotADirectoryError:
            raise StoreError("is not a directory") from None
        except OSError as exc:
            raise StoreError(f"cannot be read ({exc.strerror or exc})") from None
        return {version: LocalEntry(path) for version, path in dirs.items()}

    def materialize(self, model: str, version: int, entry: VersionEntry) -> str:
        return entry.location

    def cached_versions(self, base_path: str) -> dict[int, str]:
        return {}

    def prune(self, base_path: str, keep: set[int]) -> None:
        return None


StoreFor = Callable[[str], VersionStore]
