"""A Source that polls model base paths for version directories, whatever stores them.

TF Serving's FileSystemStoragePathSource, plus a guard against half-written versions,
over any VersionStore (servingd.sources.version_store): local directories, S3.

Contract:

    PollingSource(models, loader_factory, poll_wait_s=1.0, settle_s=1.0, store_for=None)
        `models`: what to watch (name, base_path, version policy). `loader_factory(id, path)`
        turns a ready local version directory into a Loader (the SourceAdapter); it must be
        cheap (nothing is loaded before the manager calls load()). If it raises, the
        version is sent with loader None and the error, and the manager reports it END.
        `store_for(base_path)` picks the store of a base path (default: local directories,
        polled every `poll_wait_s`, settling for `settle_s`).
    set_aspired_versions_callback(cb)
        Once, before start() (servingd.core.source).
    start()
        Polls once synchronously, so the initial aspired lists reach the manager before
        start() returns; then, when `poll_wait_s` > 0, polls on a thread: local base paths
        every `poll_wait_s` seconds, remote ones each on its own schedule on worker threads
        (a slow store or a long download never delays another model). `poll_wait_s` == 0
        polls once (as TF Serving's --file_system_poll_wait_seconds); a version still being
        written at that poll is then polled alone until it settles and is loaded, for at
        most SINGLE_POLL_SETTLE_LIMIT_S (TF Serving would have loaded it half-written).
        < 0 never polls (only explicit poll_once() calls do).
    stop(timeout)
        Ends the poll thread. Sends nothing.
    poll_once()
        One poll of every model, on the caller's thread (serialised with the poll thread).
    update_config(models)
        The new complete list of models (config reload). New models are polled from now
        on; removed models are sent an empty aspired list (the manager unloads them);
        models whose base_path or policy changed use the new ones from the next poll on.
        When the source was started and `poll_wait_s` >= 0, a poll runs at once, and every
        model's aspired list is sent again (unchanged ones too: the manager ignores repeats);
        with `poll_wait_s` == 0, versions still settling then are waited for as at start().
    errors() -> {model name: message}
        Models whose base path cannot be listed right now, or whose chosen version could
        not be fetched.
    status() -> {model name: SourceStatus}
        Per model: base path, "ok" or "error", the message, the last successful listing.
    on_servable_state(event)  (subscribe it to the manager's bus before the monitor)
        With `fall_back` on, a version of a `Latest` model that ends its load with an error
        is recorded as failed and the model's versions are selected again without it: the
        newest versions that have not failed (down to `num_versions` of them) are aspired,
        so an older good version serves instead of a corrupt newest one. The failed version
        stays out until it changes (its fingerprint is checked on every poll; it then
        settles again) or goes away. A warning names both versions;
        servingd_version_fallbacks_total counts them. The re-selection runs on its own
        short thread (the event comes from a manager thread, which must not wait for a poll).
    fallback_pending(name) -> bool
        A failure of `name` was reported and its re-selection has not been sent yet.
    awaiting_settle(name) -> bool
        Poll wait 0: a version of `name` being written at the poll is still waited for.

Which versions are aspired. On each poll, for each model: the numbered directories under
`base_path` that are *ready* go through the model's version policy; the chosen ones are
made local (store.materialize: a no-op for local paths, a verified download for S3); a
version that cannot be fetched is left out and the policy chooses again among the rest, so
what is serving stays. The result is sent to the callback when it differs from what was
last sent. A directory that vanished is no longer ready, so it stops being aspired and the
manager unloads it. A version that was aspired, disappears and comes back is sent with a
new loader. If `base_path` cannot be listed (missing, permissions, a dead network mount,
an unreachable store), nothing is sent for that model, so what is loaded stays loaded; a
warning names the model and the path once per change of that condition, errors() reports
it, polling goes on (remote stores: with exponential backoff). When that happens before
the first successful listing (a restart while the store is down), the versions found
complete in the store's local cache are aspired instead.

Half-written versions are never aspired. A version directory becomes ready when

  (a) it contains a model: `saved_model.pb`, `saved_model.pbtxt` or `model.tflite`, and
  (b) its fingerprint (relative path, size and mtime_ns, or ETag for S3, of every file in
      it, recursively) stayed the same across polls for at least the store's settle time,
      or, when the directory is first seen, every mtime in it is already that old (so
      versions present at startup, or renamed into place, are ready at once).

While some directory is settling its model is polled every min(poll interval, settle / 4).
Once ready, a version is not fingerprinted again. A settle time <= 0 turns (b) off.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from servingd.core.errors import FailedPrecondition, ServingError, Unknown
from servingd.core.ids import ServableId, model_fields, name_field
from servingd.core.loader import Loader
from servingd.core.source import AspiredVersion, AspiredVersionsCallback
from servingd.core.states import ManagerState, ServableState
from servingd.sources.metrics import VERSION_FALLBACKS
from servingd.sources.version_policy import Latest, ServableVersionPolicy
from servingd.sources.version_store import (
    FetchError,
    Fingerprint,
    LocalStore,
    StoreError,
    StoreFor,
    VersionEntry,
    VersionStore,
)

logger = logging.getLogger(__name__)

LoaderFactory = Callable[[ServableId, str], Loader]

# Remote stores: after n consecutive failed polls, wait min(interval * 2**n, this).
MAX_BACKOFF_S = 300.0
# Poll wait 0: how long versions still being written at the only poll are polled until
# they settle (a slow copy of a large model); after it they are left out, with a warning.
SINGLE_POLL_SETTLE_LIMIT_S = 600.0
REMOTE_WORKERS = 16


def backoff_s(interval_s: float, failures: int) -> float:
    """The wait before the next poll of a model whose last `failures` polls failed."""
    if failures <= 0:
        return interval_s
    return float(min(interval_s * 2 ** min(failures, 16), max(MAX_BACKOFF_S, interval_s)))


@dataclass(frozen=True, slots=True)
class SourceModelConfig:
    """One model to watch: its name, base path and version policy."""

    name: str
    base_path: str
    version_policy: ServableVersionPolicy = field(default_factory=Latest)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    base_path: str
    state: str  # "ok" or "error"
    message: str
    last_listed: float | None  # time.time() of the last successful listing


@dataclass
class _Candidate:
    """A version directory with a saved model that is not ready yet."""

    location: str
    fingerprint: Fingerprint
    since: float  # the source's clock() when this fingerprint was first seen


@dataclass(frozen=True)
class _Failure:
    """A version kept out of the selection until it is republished: its fetch failed for
    good (`fetch`: a checksum mismatch) or, with fall-back on, its load failed."""

    location: str
    fingerprint: Fingerprint
    reason: str
    fetch: bool


@dataclass
class _ModelState:
    config: SourceModelConfig
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: dict[int, str] = field(default_factory=dict)  # version -> location
    local: dict[int, tuple[str, str]] = field(default_factory=dict)  # -> (location, path)
    failed: dict[int, _Failure] = field(default_factory=dict)
    entries: dict[int, VersionEntry] = field(default_factory=dict)  # the last listing
    settling: dict[int, _Candidate] = field(default_factory=dict)
    selection_key: tuple[frozenset[int], ServableVersionPolicy] | None = None
    selection: list[int] = field(default_factory=list)
    aspired: dict[int, tuple[str, AspiredVersion]] = field(default_factory=dict)
    last_sent: tuple[tuple[int, str], ...] | None = None
    previous_sent: frozenset[int] = frozenset()  # the versions the last change replaced
    listed: bool = False
    last_listed: float | None = None
    failures: int = 0
    next_poll: float = 0.0  # clock(); remote stores only
    error: str | None = None
    warned_empty: bool = False
    warned_unreadable: set[int] = field(default_factory=set)


class PollingSource:
    """Polls base paths and aspires their ready versions; see the module docstring."""

    def __init__(
        self,
        models: Sequence[SourceModelConfig],
        loader_factory: LoaderFactory,
        poll_wait_s: float = 1.0,
        settle_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        store_for: StoreFor | None = None,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        fall_back: bool = False,
    ) -> None:
        """`clock` measures how long a fingerprint stayed the same and schedules remote
        polls; `wall_clock_ns` is compared with mtimes (tests pass fakes of both);
        `fall_back`: serve older versions when the newest fail (see on_servable_state)."""
        self._clock = clock
        self._fall_back = fall_back
        # Failed loads reported by the manager, not yet applied; models waiting for it.
        self._failure_lock = threading.Lock()
        self._failure_events: list[ServableState] = []
        self._fallback_pending: set[str] = set()
        self._wall_clock_ns = wall_clock_ns
        self._loader_factory = loader_factory
        self._poll_wait_s = poll_wait_s
        local = LocalStore(poll_wait_s, settle_s)
        self._store_for: StoreFor = store_for or (lambda _path: local)
        self._callback: AspiredVersionsCallback | None = None
        # Held for a whole poll of local models and for update_config: one at a time.
        self._poll_lock = threading.RLock()
        self._models: dict[str, _ModelState] = {}
        # Guards membership of _models with the sends (a reload removing a model while a
        # worker polls it); never held while waiting for anything else.
        self._models_lock = threading.Lock()
        self._errors_lock = threading.Lock()
        self._errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Poll wait 0: until when versions still settling are polled (under _poll_lock),
        # and the models waited for until their settled version is sent (_models_lock).
        self._settle_deadline: float | None = None
        self._settle_loop_running = False
        self._awaited: set[str] = set()
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_flight: set[str] = set()
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
                self._wait_for_settling()
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
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)

    def errors(self) -> dict[str, str]:
        with self._errors_lock:
            return dict(self._errors)

    def status(self) -> dict[str, SourceStatus]:
        errors = self.errors()
        with self._poll_lock:
            states = list(self._models.values())
        return {
            s.config.name: SourceStatus(
                s.config.base_path,
                "error" if s.config.name in errors else "ok",
                errors.get(s.config.name, ""),
                s.last_listed,
            )
            for s in states
        }

    def on_servable_state(self, event: ServableState) -> None:
        """Bus subscriber: a failed load of an aspired version triggers a fallback."""
        if not self._fall_back or event.manager_state is not ManagerState.END:
            return
        if event.error is None:
            return
        with self._failure_lock:
            self._failure_events.append(event)
            self._fallback_pending.add(event.id.name)
        threading.Thread(target=self._apply_failures, name="servingd-fallback", daemon=True).start()

    def fallback_pending(self, name: str) -> bool:
        with self._failure_lock:
            return name in self._fallback_pending

    def awaiting_settle(self, name: str) -> bool:
        """Poll wait 0: a version of `name` still being written at the poll is waited for
        (true until the aspired list with it is sent)."""
        with self._models_lock:
            return name in self._awaited

    def _apply_failures(self) -> None:
        with self._failure_lock:
            events, self._failure_events = self._failure_events, []
        try:
            for event in events:
                if self._stop.is_set():  # at shutdown every pending load ends
                    continue
                with self._models_lock:
                    state = self._models.get(event.id.name)
                if state is None:
                    continue
                with state.lock:
                    self._record_failure(state, event)
        except Exception:  # a thread of its own: say why, never die silently
            logger.exception("Falling back from a failed version failed")
        finally:
            with self._failure_lock:
                waiting = {e.id.name for e in self._failure_events}
                self._fallback_pending &= waiting

    def _record_failure(self, state: _ModelState, event: ServableState) -> None:
        name, version = event.id.name, event.id.version
        if not isinstance(state.config.version_policy, Latest):
            return  # only `latest` falls back; specific versions are what was asked for
        entry = state.entries.get(version)
        if version not in state.aspired or version in state.failed or entry is None:
            return  # not (or no longer) aspired by us
        try:
            files = entry.fingerprint()[0]
        except OSError:
            files = ()  # unreadable now: any readable state later counts as a change
        state.failed[version] = _Failure(entry.location, files, str(event.error), fetch=False)
        store = self._store_for(state.config.base_path)
        self._aspire(state, self._select_local(state, store, state.entries))
        fields = model_fields(event.id)
        older = [v for v in state.selection if v < version]
        if older:
            VERSION_FALLBACKS.labels(name).inc()
            logger.warning(
                "Model %s version %d failed to load (%s); serving version %s instead "
                "(version %d is tried again when its directory changes)",
                name,
                version,
                event.error,
                ", ".join(map(str, older)),
                version,
                extra=fields,
            )
        else:
            logger.error(
                "Model %s version %d failed to load (%s) and no older version is left to "
                "fall back to",
                name,
                version,
                event.error,
                extra=fields,
            )

    def poll_once(self) -> None:
        """Local models one after the other; remote ones side by side on the workers (a
        store that times out costs one timeout, not one per model); returns when all are
        done."""
        with self._poll_lock:
            remote = []
            for state in list(self._models.values()):
                if self._store_for(state.config.base_path).remote:
                    remote.append(state)
                else:
                    self._poll_guarded(state)
            if remote:
                concurrent.futures.wait(
                    [self._pool().submit(self._poll_guarded, s) for s in remote]
                )

    def update_config(self, models: Sequence[SourceModelConfig]) -> None:
        wanted = {m.name: m for m in models}
        if len(wanted) != len(models):
            raise FailedPrecondition("A model is configured twice")
        with self._poll_lock:
            for name in [n for n in self._models if n not in wanted]:
                with self._models_lock:
                    del self._models[name]
                    self._set_error(name, None)
                    logger.info(
                        "Model %s removed from the config: unaspiring all its versions",
                        name,
                        extra=name_field(name),
                    )
                    self._send(name, [])
            for name, config in wanted.items():
                state = self._models.get(name)
                if state is None:
                    logger.info("Model %s added: polling %s", name, config.base_path)
                    with self._models_lock:
                        self._models[name] = _ModelState(config)
                    continue
                with state.lock:
                    if config.base_path != state.config.base_path:
                        logger.info(
                            "Model %s: base path changed from %s to %s",
                            name,
                            state.config.base_path,
                            config.base_path,
                        )
                        state.ready.clear()
                        state.local.clear()
                        state.failed.clear()
                        state.settling.clear()
                        state.warned_unreadable.clear()
                        state.listed = False
                        state.failures = 0
                        state.next_poll = 0.0
                    state.config = config
                    state.last_sent = None  # send again, even if unchanged
            if self._started and self._poll_wait_s >= 0:
                self.poll_once()
                if self._poll_wait_s == 0:
                    self._wait_for_settling()

    # ----------------------------------------------------------------- polling

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._next_wait()):
            try:
                self._poll_due()
            except Exception:  # never let the thread die
                logger.exception("File system poll failed")

    def _poll_due(self) -> None:
        """Local models now, on this thread; remote ones that are due, on the workers."""
        with self._poll_lock:
            states = list(self._models.values())
            for state in states:
                if not self._store_for(state.config.base_path).remote:
                    self._poll_guarded(state)
        now = self._clock()
        for state in states:
            name = state.config.name
            if not self._store_for(state.config.base_path).remote or state.next_poll > now:
                continue
            with self._models_lock:
                if name in self._in_flight or self._models.get(name) is not state:
                    continue
                self._in_flight.add(name)
            self._pool().submit(self._poll_remote, state)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._models_lock:
            if self._workers is None:
                self._workers = concurrent.futures.ThreadPoolExecutor(
                    REMOTE_WORKERS, thread_name_prefix="servingd-remote-source"
                )
            return self._workers

    def _poll_remote(self, state: _ModelState) -> None:
        try:
            self._poll_guarded(state)
        finally:
            with self._models_lock:
                self._in_flight.discard(state.config.name)

    def _poll_guarded(self, state: _ModelState) -> None:
        try:
            with state.lock:
                self._poll_model(state)
        except Exception:
            logger.exception(
                "Polling model %s failed",
                state.config.name,
                extra={"MODEL_NAME": state.config.name},
            )

    def _next_wait(self) -> float:
        wait = self._poll_wait_s
        now = self._clock()
        with self._models_lock:
            states = [s for s in self._models.values() if s.config.name not in self._in_flight]
        for state in states:
            store = self._store_for(state.config.base_path)
            if store.remote:
                wait = min(wait, max(0.0, state.next_poll - now))
            elif state.settling and store.settle_s > 0:
                wait = min(wait, store.settle_s / 4)
        return max(0.005, wait)

    def _settling_states(self) -> list[_ModelState]:
        # Only a store with a settle time > 0 ever records a version as settling.
        return [s for s in self._models.values() if s.settling]

    def _wait_for_settling(self) -> None:
        """Poll wait 0, after the poll (under _poll_lock): versions still being written are
        polled on a thread until they settle, from now for SINGLE_POLL_SETTLE_LIMIT_S."""
        states = self._settling_states()
        if not states:
            return
        self._settle_deadline = self._clock() + SINGLE_POLL_SETTLE_LIMIT_S
        with self._models_lock:
            self._awaited.update(s.config.name for s in states)
        self._log_settling(
            states,
            logging.INFO,
            "is still being written: waiting for it to settle before loading it (poll wait 0)",
        )
        if not self._settle_loop_running:  # else the running loop takes them on
            self._settle_loop_running = True
            self._thread = threading.Thread(
                target=self._settle_loop, name="servingd-fs-settle", daemon=True
            )
            self._thread.start()

    def _settle_loop(self) -> None:
        while True:
            with self._poll_lock:
                settling = self._settling_states()
                left = (self._settle_deadline or 0.0) - self._clock()
                if settling and left <= 0:
                    self._log_settling(
                        settling,
                        logging.WARNING,
                        f"was still being written {SINGLE_POLL_SETTLE_LIMIT_S:.0f} s after the "
                        "only poll (poll wait 0): it will not be loaded",
                    )
                if not settling or left <= 0 or self._stop.is_set():
                    self._settle_loop_running = False
                    with self._models_lock:
                        self._awaited.clear()
                    return
            wait = min(self._store_for(s.config.base_path).settle_s for s in settling) / 4
            if self._stop.wait(max(0.005, min(wait, left))):
                continue  # stopping: ends above
            with self._poll_lock:
                for state in settling:
                    name = state.config.name
                    if self._models.get(name) is state:
                        self._poll_guarded(state)  # sends the version once it settled
                    if self._models.get(name) is not state or not state.settling:
                        with self._models_lock:
                            self._awaited.discard(name)

    @staticmethod
    def _log_settling(states: Sequence[_ModelState], level: int, what: str) -> None:
        for state in states:
            for version, candidate in sorted(state.settling.items()):
                logger.log(
                    level,
                    "Model %s version %d (%s) %s",
                    state.config.name,
                    version,
                    candidate.location,
                    what,
                    extra=name_field(state.config.name),
                )

    def _poll_model(self, state: _ModelState) -> None:
        config = state.config
        store = self._store_for(config.base_path)
        try:
            entries = store.list_versions(config.name, config.base_path)
        except StoreError as exc:
            state.failures += 1
            state.next_poll = self._clock() + backoff_s(store.poll_interval_s, state.failures)
            self._set_error(
                config.name,
                f"Base path {config.base_path} of model {config.name} {exc.reason}; "
                "the versions already loaded stay loaded",
            )
            if not state.listed:
                self._serve_from_cache(state, store)
            return
        state.listed = True
        state.last_listed = time.time()
        state.entries = entries
        if not entries and not state.warned_empty:
            logger.warning(
                "No versions of model %s found under %s",
                config.name,
                config.base_path,
                extra=name_field(config.name),
            )
        state.warned_empty = not entries

        for version in list(state.ready):
            entry = entries.get(version)
            if entry is None or entry.location != state.ready[version]:
                del state.ready[version]
        for version in list(state.settling):
            entry = entries.get(version)
            if entry is None or entry.location != state.settling[version].location:
                del state.settling[version]
        for version in list(state.local):
            if state.ready.get(version) != state.local[version][0]:
                del state.local[version]
        self._forget_changed_failures(state, entries)
        for version, entry in entries.items():
            if version not in state.ready:
                self._check_candidate(state, store, version, entry)
        settling = bool(state.settling) and store.settle_s > 0
        interval = min(store.poll_interval_s, store.settle_s / 4) if settling else 0.0
        state.next_poll = self._clock() + (interval or store.poll_interval_s)

        state.error = None
        selection = self._select_local(state, store, entries)
        self._aspire(state, selection)
        self._set_error(config.name, self._fetch_error(state))
        if state.error is None:
            state.failures = 0
        if store.remote:
            keep = {v for v, _ in state.last_sent or ()} | state.previous_sent
            store.prune(config.base_path, keep)

    def _forget_changed_failures(
        self, state: _ModelState, entries: dict[int, VersionEntry]
    ) -> None:
        """A failed version that changed (or went) may be tried again."""
        config = state.config
        for version, failure in list(state.failed.items()):
            entry = entries.get(version)
            if entry is None or entry.location != failure.location:
                del state.failed[version]  # gone or replaced: a new version
                continue
            try:
                current = entry.fingerprint()[0]
            except OSError:
                continue
            if current != failure.fingerprint:
                del state.failed[version]  # republished: settles again, then is tried
                state.ready.pop(version, None)
                state.local.pop(version, None)
                logger.info(
                    "Model %s version %d changed since it failed: trying it again once it "
                    "is complete",
                    config.name,
                    version,
                    extra=model_fields(ServableId(config.name, version)),
                )

    def _select_local(
        self, state: _ModelState, store: VersionStore, entries: dict[int, VersionEntry]
    ) -> list[int]:
        """The policy's choice among the ready versions that are (or could be made) local."""
        config = state.config
        excluded = set(state.failed)
        while True:
            key = (frozenset(state.ready.keys() - excluded), config.version_policy)
            if key != state.selection_key:
                state.selection = config.version_policy.select(key[0], model=config.name)
                state.selection_key = key
            missing = [v for v in state.selection if v not in state.local]
            if not missing:
                return state.selection
            for version in missing:
                entry = entries[version]
                try:
                    path = store.materialize(config.name, version, entry)
                except FetchError as exc:
                    excluded.add(version)
                    if exc.permanent:
                        state.failed[version] = _Failure(
                            entry.location, entry.fingerprint()[0], exc.message, fetch=True
                        )
                    logger.error(
                        "%s", exc.message, extra=model_fields(ServableId(config.name, version))
                    )
                    if exc.permanent:
                        continue
                    state.error = exc.message
                    state.failures += 1
                    state.next_poll = self._clock() + backoff_s(
                        store.poll_interval_s, state.failures
                    )
                    continue
                state.local[version] = (state.ready[version], path)

    @staticmethod
    def _fetch_error(state: _ModelState) -> str | None:
        """Why versions the policy would choose are not served: checksum failures (until
        republished) and this poll's network failure."""
        messages = [f.reason for f in state.failed.values() if f.fetch]
        if state.error is not None:
            messages.append(state.error)
        return "; ".join(messages) or None

    def _serve_from_cache(self, state: _ModelState, store: VersionStore) -> None:
        cached = store.cached_versions(state.config.base_path)
        if not cached:
            return
        for version, path in cached.items():
            state.ready[version] = state.config.base_path.rstrip("/") + f"/{version}"
            state.local[version] = (state.ready[version], path)
        selection = state.config.version_policy.select(state.local.keys(), model=state.config.name)
        if state.last_sent is None:
            logger.warning(
                "Model %s: the store is unreachable; serving version(s) %s from the local cache",
                state.config.name,
                selection,
                extra={"MODEL_NAME": state.config.name},
            )
        self._aspire(state, selection)

    def _check_candidate(
        self, state: _ModelState, store: VersionStore, version: int, entry: VersionEntry
    ) -> None:
        name = state.config.name
        if not entry.has_model():
            state.settling.pop(version, None)
            return
        try:
            current, newest_mtime_ns = entry.fingerprint()
        except OSError as exc:
            state.settling.pop(version, None)
            if version not in state.warned_unreadable:
                state.warned_unreadable.add(version)
                logger.warning(
                    "Model %s version %d: cannot read %s: %s",
                    name,
                    version,
                    entry.location,
                    exc,
                    extra=model_fields(ServableId(name, version)),
                )
            return
        state.warned_unreadable.discard(version)
        now = self._clock()
        settle_s = store.settle_s
        candidate = state.settling.get(version)
        if settle_s <= 0:
            ready = True
        elif candidate is None:
            ready = newest_mtime_ns <= self._wall_clock_ns() - int(settle_s * 1e9)
            if not ready:
                state.settling[version] = _Candidate(entry.location, current, now)
                logger.info(
                    "Model %s version %d: waiting for %s to stay unchanged for %.1fs",
                    name,
                    version,
                    entry.location,
                    settle_s,
                )
        elif candidate.fingerprint != current:
            candidate.fingerprint = current
            candidate.since = now
            ready = False
        else:
            ready = now - candidate.since >= settle_s
        if ready:
            state.settling.pop(version, None)
            state.ready[version] = entry.location
            logger.info(
                "Model %s version %d is ready at %s",
                name,
                version,
                entry.location,
                extra=model_fields(ServableId(name, version)),
            )

    def _aspire(self, state: _ModelState, versions: list[int]) -> None:
        name = state.config.name
        sent = tuple((v, state.local[v][1]) for v in versions)
        if sent == state.last_sent:
            return
        aspired: dict[int, tuple[str, AspiredVersion]] = {}
        for version, path in sent:
            known = state.aspired.get(version)
            if known is not None and known[0] == path:
                aspired[version] = known  # still aspired: keep the same loader
            else:
                aspired[version] = (path, self._make_aspired(ServableId(name, version), path))
        with self._models_lock:
            if self._models.get(name) is not state:
                return  # removed by a reload while this poll ran
            if self._send(name, [a for _, a in aspired.values()]):
                state.aspired = aspired
                before = frozenset(v for v, _ in state.last_sent or ())
                if before and before != {v for v, _ in sent}:
                    state.previous_sent = before  # kept in a remote store's cache
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
            logger.error("%s", error, extra=model_fields(servable_id))
            return AspiredVersion(servable_id, None, error)

    def _send(self, name: str, versions: list[AspiredVersion]) -> bool:
        callback = self._callback
        if callback is None:
            return False
        logger.info(
            "Model %s: aspired versions %s",
            name,
            [v.id.version for v in versions] or "none",
            extra=name_field(name),
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
            logger.warning("%s", message, extra={"MODEL_NAME": name})
        elif message is None and previous is not None:
            logger.info("Model %s: base path is readable again", name, extra={"MODEL_NAME": name})
