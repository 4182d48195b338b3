"""A Source that polls model base paths for version directories.

TF Serving's FileSystemStoragePathSource, plus a guard against half-written versions.

Contract:

    FileSystemSource(models, loader_factory, poll_wait_s=1.0, settle_s=1.0)
        `models`: what to watch (name, base_path, version policy). `loader_factory(id, path)`
        turns a ready version directory into a Loader (the SourceAdapter); it must be cheap
        (nothing is loaded before the manager calls load()). If it raises, the version is
        sent with loader None and the error, and the manager reports it END.
    set_aspired_versions_callback(cb)
        Once, before start() (servingd.core.source).
    start()
        Polls once synchronously, so the initial aspired lists reach the manager before
        start() returns; then, when `poll_wait_s` > 0, polls every `poll_wait_s` seconds on
        a thread. `poll_wait_s` == 0 polls exactly once; < 0 never polls (only explicit
        poll_once() calls do), as TF Serving's --file_system_poll_wait_seconds.
    stop(timeout)
        Ends the poll thread. Sends nothing.
    poll_once()
        One poll of every model, on the caller's thread (serialised with the poll thread).
    update_config(models)
        The new complete list of models (config reload). New models are polled from now
        on; removed models are sent an empty aspired list (the manager unloads them);
        models whose base_path or policy changed use the new ones from the next poll on.
        When the source was started and `poll_wait_s` >= 0, a poll runs at once, and every
        model's aspired list is sent again (unchanged ones too: the manager ignores repeats).
    errors() -> {model name: message}
        Models whose base path cannot be listed right now.

Which versions are aspired. On each poll, for each model: the numbered directories under
`base_path` (servingd.sources.version_dirs) that are *ready* go through the model's version
policy; the result is sent to the callback when it differs from what was last sent. A
directory that vanished is no longer ready, so it stops being aspired and the manager
unloads it. A version that was aspired, disappears and comes back is sent with a new
loader. If `base_path` cannot be listed (missing, permissions, a dead network mount),
nothing is sent for that model, so what is loaded stays loaded; a warning names the model
and the path once per change of that condition, errors() reports it, polling goes on.

Half-written versions are never aspired. A version directory becomes ready when

  (a) it contains a model: `saved_model.pb`, `saved_model.pbtxt` or `model.tflite`, and
  (b) its fingerprint (relative path, size and mtime_ns of every file and directory in it,
      recursively) stayed the same across polls for at least `settle_s` seconds, or, when
      the directory is first seen, every mtime in it is already `settle_s` seconds old (so
      versions present at startup, or renamed into place, are ready at once).

While some directory is settling the thread polls every min(poll_wait_s, settle_s / 4).
Once ready, a version is not fingerprinted again. `settle_s` <= 0 turns (b) off.

This is a heuristic: a copy that keeps the source's mtimes (`cp -p`, `rsync -t`) can look
settled between two files. The reliable way to publish a version is still to write it
into a hidden directory next to the versions (`.tmp-124`, ignored here) and to rename it
to its number when complete: the rename is atomic.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from servingd.core.errors import FailedPrecondition, ServingError, Unknown
from servingd.core.ids import ServableId
from servingd.core.loader import Loader
from servingd.core.source import AspiredVersion, AspiredVersionsCallback
from servingd.sources.version_dirs import list_version_dirs
from servingd.sources.version_policy import Latest, ServableVersionPolicy

logger = logging.getLogger(__name__)

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
TFLITE_MODEL_FILE = "model.tflite"
MODEL_FILES = (*SAVED_MODEL_FILES, TFLITE_MODEL_FILE)

LoaderFactory = Callable[[ServableId, str], Loader]
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class SourceModelConfig:
    """One model to watch: its name, base path and version policy."""

    name: str
    base_path: str
    version_policy: ServableVersionPolicy = field(default_factory=Latest)


def has_model(path: str, files: Sequence[str] = MODEL_FILES) -> bool:
    """Whether the version directory holds one of `files` (a SavedModel or a TF Lite model)."""
    return any(os.path.isfile(os.path.join(path, f)) for f in files)


def fingerprint(path: str) -> tuple[Fingerprint, int]:
    """(relative path, size, mtime_ns) of everything under `path`, and the newest mtime_ns.

    Symlinked directories are not followed; symlinked files count with their target's
    size and mtime. Raises OSError if something cannot be read.
    """
    entries: list[tuple[str, int, int]] = []
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


@dataclass
class _Candidate:
    """A version directory with a saved model that is not ready yet."""

    path: str
    fingerprint: Fingerprint
    since: float  # the source's clock() when this fingerprint was first seen


@dataclass
class _ModelState:
    config: SourceModelConfig
    ready: dict[int, str] = field(default_factory=dict)
    settling: dict[int, _Candidate] = field(default_factory=dict)
    selection_key: tuple[frozenset[int], ServableVersionPolicy] | None = None
    selection: list[int] = field(default_factory=list)
    aspired: dict[int, tuple[str, AspiredVersion]] = field(default_factory=dict)
    last_sent: tuple[tuple[int, str], ...] | None = None
    error: str | None = None
    warned_empty: bool = False
    warned_unreadable: set[int] = field(default_factory=set)


class FileSystemSource:
    """Polls base paths and aspires their ready version dirs; see the module docstring."""

    def __init__(
        self,
        models: Sequence[SourceModelConfig],
        loader_factory: LoaderFactory,
        poll_wait_s: float = 1.0,
        settle_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` measures how long a fingerprint stayed the same (tests pass a fake)."""
        self._clock = clock
        self._loader_factory = loader_factory
        self._poll_wait_s = poll_wait_s
        self._settle_s = settle_s
        self._callback: AspiredVersionsCallback | None = None
        # Held for a whole poll and for update_config: one at a time.
        self._poll_lock = threading.RLock()
        self._models: dict[str, _ModelState] = {}
        self._errors_lock = threading.Lock()
        self._errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        for model in models:
            if model.name in self._models:
                raise FailedPrecondition(f"Model {model.name} is configured twice")
            self._models[model.name] = _ModelState(model)

    # ----------------------------------------------------------------- Source contract

    def set_aspired_versions_callback(self, callback: AspiredVersionsCallback) -> None:
        if self._callback is not None:
            raise FailedPrecondition("The aspired-versions callback can be set only once")
        self._callback = callback

    def start(self) -> None:
        if self._callback is None:
            raise FailedPrecondition("set_aspired_versions_callback() must come before start()")
        with self._poll_lock:
            if self._started:
                return
            self._started = True
            if self._poll_wait_s < 0:
                logger.info("File system polling is disabled (poll wait < 0)")
                return
            self.poll_once()
            if self._poll_wait_s == 0:
                self._warn_unsettled_at_single_poll()
                return
            self._thread = threading.Thread(
                target=self._poll_loop, name="servingd-fs-source", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.error("File system source thread did not stop within %.1fs", timeout)

    def errors(self) -> dict[str, str]:
        with self._errors_lock:
            return dict(self._errors)

    def poll_once(self) -> None:
        with self._poll_lock:
            for state in list(self._models.values()):
                try:
                    self._poll_model(state)
                except Exception:
                    logger.exception("Polling model %s failed", state.config.name)

    def update_config(self, models: Sequence[SourceModelConfig]) -> None:
        wanted = {m.name: m for m in models}
        if len(wanted) != len(models):
            raise FailedPrecondition("A model is configured twice")
        with self._poll_lock:
            for name in [n for n in self._models if n not in wanted]:
                del self._models[name]
                self._set_error(name, None)
                logger.info("Model %s removed from the config: unaspiring all its versions", name)
                self._send(name, [])
            for name, config in wanted.items():
                state = self._models.get(name)
                if state is None:
                    logger.info("Model %s added: polling %s", name, config.base_path)
                    self._models[name] = _ModelState(config)
                    continue
                if config.base_path != state.config.base_path:
                    logger.info(
                        "Model %s: base path changed from %s to %s",
                        name,
                        state.config.base_path,
                        config.base_path,
                    )
                    state.ready.clear()
                    state.settling.clear()
                    state.warned_unreadable.clear()
                state.config = config
                state.last_sent = None  # send again, even if unchanged
            if self._started and self._poll_wait_s >= 0:
                self.poll_once()

    # ----------------------------------------------------------------- polling

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._next_wait()):
            try:
                self.poll_once()
            except Exception:  # never let the thread die
                logger.exception("File system poll failed")

    def _next_wait(self) -> float:
        with self._poll_lock:
            settling = any(state.settling for state in self._models.values())
        if settling and self._settle_s > 0:
            return max(0.005, min(self._poll_wait_s, self._settle_s / 4))
        return self._poll_wait_s

    def _warn_unsettled_at_single_poll(self) -> None:
        for state in self._models.values():
            for version, candidate in sorted(state.settling.items()):
                logger.warning(
                    "Model %s version %d (%s) was still being written at the only poll "
                    "(poll wait 0): it will not be loaded",
                    state.config.name,
                    version,
                    candidate.path,
                )

    def _poll_model(self, state: _ModelState) -> None:
        config = state.config
        try:
            dirs = list_version_dirs(config.base_path)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                reason = "does not exist"
            elif isinstance(exc, NotADirectoryError):
                reason = "is not a directory"
            else:
                reason = f"cannot be read ({exc.strerror or exc})"
            self._set_error(
                config.name,
                f"Base path {config.base_path} of model {config.name} {reason}; "
                "the versions already loaded stay loaded",
            )
            return
        self._set_error(config.name, None)
        if not dirs and not state.warned_empty:
            logger.warning("No versions of model %s found under %s", config.name, config.base_path)
        state.warned_empty = not dirs

        for version in list(state.ready):
            if dirs.get(version) != state.ready[version]:
                del state.ready[version]
        for version in list(state.settling):
            if dirs.get(version) != state.settling[version].path:
                del state.settling[version]
        for version, path in dirs.items():
            if version not in state.ready:
                self._check_candidate(state, version, path)

        key = (frozenset(state.ready), config.version_policy)
        if key != state.selection_key:
            state.selection = config.version_policy.select(state.ready, model=config.name)
            state.selection_key = key
        self._aspire(state, state.selection)

    def _check_candidate(self, state: _ModelState, version: int, path: str) -> None:
        name = state.config.name
        if not has_model(path):
            state.settling.pop(version, None)
            return
        try:
            current, newest_mtime_ns = fingerprint(path)
        except OSError as exc:
            state.settling.pop(version, None)
            if version not in state.warned_unreadable:
                state.warned_unreadable.add(version)
                logger.warning("Model %s version %d: cannot read %s: %s", name, version, path, exc)
            return
        state.warned_unreadable.discard(version)
        now = self._clock()
        candidate = state.settling.get(version)
        if self._settle_s <= 0:
            ready = True
        elif candidate is None:
            ready = newest_mtime_ns <= time.time_ns() - int(self._settle_s * 1e9)
            if not ready:
                state.settling[version] = _Candidate(path, current, now)
                logger.info(
                    "Model %s version %d: waiting for %s to stay unchanged for %.1fs",
                    name,
                    version,
                    path,
                    self._settle_s,
                )
        elif candidate.fingerprint != current:
            candidate.fingerprint = current
            candidate.since = now
            ready = False
        else:
            ready = now - candidate.since >= self._settle_s
        if ready:
            state.settling.pop(version, None)
            state.ready[version] = path
            logger.info("Model %s version %d is ready at %s", name, version, path)

    def _aspire(self, state: _ModelState, versions: list[int]) -> None:
        name = state.config.name
        sent = tuple((v, state.ready[v]) for v in versions)
        if sent == state.last_sent:
            return
        aspired: dict[int, tuple[str, AspiredVersion]] = {}
        for version, path in sent:
            known = state.aspired.get(version)
            if known is not None and known[0] == path:
                aspired[version] = known  # still aspired: keep the same loader
            else:
                aspired[version] = (path, self._make_aspired(ServableId(name, version), path))
        if self._send(name, [a for _, a in aspired.values()]):
            state.aspired = aspired
            state.last_sent = sent

    def _make_aspired(self, servable_id: ServableId, path: str) -> AspiredVersion:
        try:
            return AspiredVersion(servable_id, self._loader_factory(servable_id, path))
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, ServingError)
                else Unknown(
                    f"Cannot create a loader for model {servable_id.name} version "
                    f"{servable_id.version} at {path}: {type(exc).__name__}: {exc}"
                )
            )
            logger.error("%s", error)
            return AspiredVersion(servable_id, None, error)

    def _send(self, name: str, versions: list[AspiredVersion]) -> bool:
        callback = self._callback
        if callback is None:
            return False
        logger.info(
            "Model %s: aspired versions %s",
            name,
            [v.id.version for v in versions] or "none",
        )
        try:
            callback(name, versions)
        except Exception:
            logger.exception("Aspired-versions callback failed for model %s", name)
            return False
        return True

    def _set_error(self, name: str, message: str | None) -> None:
        with self._errors_lock:
            previous = self._errors.get(name)
            if message is None:
                self._errors.pop(name, None)
            else:
                self._errors[name] = message
        if message is not None and message != previous:
            logger.warning("%s", message)
        elif message is None and previous is not None:
            logger.info("Model %s: base path is readable again", name)
