"""The AspiredVersionsManager (TF Serving's core/aspired_versions_manager.h, in Python).

It is the target of a Source: `set_aspired_versions(name, versions)` (the Source callback)
says which versions of a stream should be loaded. A manage thread compares that with what
is loaded, asks the AspiredVersionPolicy what to do next for each stream, and runs the
loads and unloads on two worker pools. Requests take ServableHandles with `get_handle`.

Life of one version (each step is a ServableState event on the bus, in this order):

    START      the version was aspired for the first time (or again after END, see below)
    LOADING    a load worker started loading it (after the policy chose it)
    AVAILABLE  loaded; get_handle() can return it
    UNLOADING  the policy chose to unload it: it leaves the lookup map at once (no new
               handles); a worker waits for the last handle to be released, then calls
               loader.unload()
    END        unloaded; or never loaded (it stopped being aspired while in START); or the
               load failed (the event carries the error, a ServingError)

Contract details:

- Loads are retried: an attempt that raises is retried up to `max_num_load_retries` more
  times, `load_retry_interval_s` apart (measured on `clock`, injectable). A failed attempt
  is published as LOADING with the error (so status and readiness can tell "failed, will
  retry" from "loading"); the wait between attempts holds no load thread: the manage
  thread re-dispatches the version when its time comes. Errors that retrying cannot fix
  (PERMANENT_LOAD_ERRORS: a missing or unparsable saved_model.pb, a bad graph) end the
  version at once. The wait is cut short, and the version goes to END with the last
  error, if the version stops being aspired or the manager stops. Errors that are not
  ServingErrors are wrapped in `Unknown` naming the model, version and cause.
- A version whose load failed stays in END while it is still aspired (repeating it in an
  aspired list does not retry it); once an aspired list omits it, it is forgotten, and a
  later aspired occurrence starts a fresh life (START) with the loader it comes with. The
  same holds for a version that was unloaded. A version re-aspired while it is UNLOADING
  is loaded again, with the new loader, once the unload has finished.
- A repeated aspired version keeps its original loader; the new one is dropped.
- Events are published in order per manager (one publisher at a time), after the
  manager's own locks are released, so subscribers may call the manager's getters. The
  lookup map is updated before the matching event goes out: after AVAILABLE is seen,
  get_handle() finds the version; after UNLOADING is seen, it does not.
- get_handle() is the hot path: one dict lookup and a refcount under a short lock.
- stop(timeout) stops the manage thread, un-aspires everything, waits for loads in
  progress, unloads every loaded version (waiting for handles) and shuts the pools down,
  all within `timeout`. It returns False if something could not finish in time (a
  version whose handles are still held at the deadline is left loaded and logged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

from servingd.core.errors import InvalidArgument, NotFound, ServingError, Unknown
from servingd.core.events import EventBus
from servingd.core.handles import LoadedServable, ServableHandle
from servingd.core.ids import ServableId, model_fields
from servingd.core.loader import Loader
from servingd.core.policy import (
    Action,
    AspiredServableStateSnapshot,
    AspiredVersionPolicy,
    AvailabilityPreservingPolicy,
    ServableAction,
)
from servingd.core.source import AspiredVersion
from servingd.core.states import ManagerState, ServableState

logger = logging.getLogger(__name__)

# Status codes of load errors that another attempt on the same files cannot fix.
PERMANENT_LOAD_ERRORS = frozenset({"NOT_FOUND", "DATA_LOSS", "INVALID_ARGUMENT", "UNIMPLEMENTED"})


@dataclass
class ManagerOptions:
    """Tuning of the AspiredVersionsManager (names and defaults as in TF Serving)."""

    num_load_threads: int = 4
    num_unload_threads: int = 4
    max_num_load_retries: int = 5
    load_retry_interval_s: float = 60.0
    manage_interval_s: float = 0.1
    unload_handle_wait_warning_s: float = 10.0
    policy: AspiredVersionPolicy = field(default_factory=AvailabilityPreservingPolicy)
    # When a retry is due (tests pass a fake clock and drive it).
    clock: Callable[[], float] = time.monotonic

    def validate(self) -> None:
        if self.num_load_threads < 1 or self.num_unload_threads < 1:
            raise InvalidArgument("num_load_threads and num_unload_threads must be at least 1")
        if self.max_num_load_retries < 0:
            raise InvalidArgument("max_num_load_retries must not be negative")
        if self.load_retry_interval_s < 0:
            raise InvalidArgument("load_retry_interval_s must not be negative")
        if self.manage_interval_s <= 0 or self.unload_handle_wait_warning_s <= 0:
            raise InvalidArgument("manage_interval_s and unload_handle_wait_warning_s must be > 0")


@dataclass(eq=False)
class _Harness:
    """The manager's record of one life of one version (TF Serving's LoaderHarness).

    `state` is what the policy sees: LOADING from the moment a load is dispatched.
    `retry_at` is set while a failed load waits for its next attempt (no worker holds it
    then); `error` is the last attempt's error. All fields are guarded by the manager's
    `_lock`.
    """

    id: ServableId
    loader: Loader | None
    state: ManagerState = ManagerState.START
    aspired: bool = True
    error: ServingError | None = None
    loaded: LoadedServable | None = None
    reaspired: AspiredVersion | None = None
    attempts: int = 0
    retry_at: float | None = None


def _load_error(servable_id: ServableId, exc: Exception) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    error = Unknown(
        f"Failed to load servable {servable_id.name} version {servable_id.version}: "
        f"{type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error


class AspiredVersionsManager:
    """Loads and unloads versions as aspired by a Source; see the module docstring."""

    def __init__(self, bus: EventBus[ServableState], options: ManagerOptions | None = None):
        self._bus = bus
        self._options = options if options is not None else ManagerOptions()
        self._options.validate()
        self._policy: AspiredVersionPolicy = self._options.policy

        # Guards _streams, every _Harness, _pending_events, _stopping, _futures.
        self._lock = threading.Lock()
        self._streams: dict[str, dict[int, _Harness]] = {}
        self._pending_events: list[ServableState] = []
        self._publish_lock = threading.RLock()
        self._futures: dict[Future[None], str] = {}  # in-flight work -> "load" / "unload"
        self._stopping = False
        self._stop_deadline: float | None = None

        # The lookup map of the hot path. Lock order: _lock, then _serving_lock.
        self._serving_lock = threading.Lock()
        self._serving: dict[str, dict[int, LoadedServable]] = {}
        self._latest: dict[str, LoadedServable] = {}

        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._load_pool = ThreadPoolExecutor(
            self._options.num_load_threads, thread_name_prefix="servingd-load"
        )
        self._unload_pool = ThreadPoolExecutor(
            self._options.num_unload_threads, thread_name_prefix="servingd-unload"
        )

    # ----------------------------------------------------------------- life of the manager

    def start(self) -> None:
        """Starts the manage thread. Aspired versions set before start() wait for it."""
        with self._lock:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(
                target=self._manage_loop, name="servingd-manager", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Unloads everything within `timeout` seconds; see the module docstring."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._stopping:
                return True
            self._stopping = True
            self._stop_deadline = deadline
            for stream in self._streams.values():
                for version, harness in list(stream.items()):
                    self._unaspire(stream, version, harness)
            thread = self._thread
        self._flush_events()
        self._wake.set()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.error("Manager thread did not stop within %.1fs", timeout)

        with self._lock:
            loads = {f for f, kind in self._futures.items() if kind == "load"}
        wait_futures(loads, timeout=max(0.0, deadline - time.monotonic()))

        with self._lock:
            harnesses = sorted(
                (h for stream in self._streams.values() for h in stream.values()),
                key=lambda h: h.id,
            )
            for harness in harnesses:
                if harness.state is ManagerState.AVAILABLE:
                    self._dispatch_unload(harness)
            for harness in harnesses:
                if harness.state is ManagerState.UNLOADING and harness.loaded is not None:
                    harness.loaded.interrupt()  # re-read the deadline we just set
            futures = set(self._futures)
        self._flush_events()
        _, not_done = wait_futures(futures, timeout=max(0.0, deadline - time.monotonic()))
        clean = not not_done
        with self._lock:
            left = [h.id for s in self._streams.values() for h in s.values()]
        if left:
            clean = False
            logger.error(
                "Manager stopped with versions not unloaded: %s", ", ".join(map(str, left))
            )
        self._load_pool.shutdown(wait=not not_done, cancel_futures=True)
        self._unload_pool.shutdown(wait=not not_done, cancel_futures=True)
        logger.info("Manager stopped%s", "" if clean else " (not cleanly)")
        return clean

    def set_policy(self, policy: AspiredVersionPolicy) -> None:
        """Replaces the policy; it applies from the next manage pass on."""
        with self._lock:
            self._policy = policy
        self._wake.set()

    # ----------------------------------------------------------------- the Source callback

    def set_aspired_versions(self, name: str, versions: Sequence[AspiredVersion]) -> None:
        """The complete aspired list of stream `name` (see servingd.core.source)."""
        wanted: dict[int, AspiredVersion] = {}
        for aspired in versions:
            if aspired.id.name != name:
                logger.error("Ignoring aspired version %s sent for stream %r", aspired.id, name)
            elif aspired.id.version in wanted:
                logger.warning("Ignoring duplicate aspired version %s", aspired.id)
            else:
                wanted[aspired.id.version] = aspired
        with self._lock:
            if self._stopping:
                logger.warning("Manager is stopping; ignoring aspired versions of %r", name)
                return
            stream = self._streams.setdefault(name, {})
            for version, harness in list(stream.items()):
                if version not in wanted:
                    self._unaspire(stream, version, harness)
            for version, aspired in wanted.items():
                known = stream.get(version)
                if known is None:
                    self._start_life(stream, aspired)
                elif known.state is ManagerState.UNLOADING:
                    known.reaspired = aspired
                else:
                    known.aspired = True
            if not stream:
                del self._streams[name]
        self._flush_events()
        self._wake.set()

    # ----------------------------------------------------------------- lookups (hot path)

    def get_handle(self, name: str, version: int | None = None) -> ServableHandle:
        """A handle on `version` of `name`, or on its highest AVAILABLE version if None.

        Raises NotFound when no such version is AVAILABLE. Release the handle when done.
        """
        with self._serving_lock:
            if version is None:
                loaded = self._latest.get(name)
            else:
                loaded = self._serving.get(name, {}).get(version)
            handle = loaded.acquire() if loaded is not None else None
        if handle is None:
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {request}")
        return handle

    def available_ids(self) -> list[ServableId]:
        with self._serving_lock:
            return sorted(
                ServableId(name, v) for name, versions in self._serving.items() for v in versions
            )

    def list_available_versions(self, name: str) -> list[int]:
        with self._serving_lock:
            return sorted(self._serving.get(name, {}))

    # ----------------------------------------------------------------- internals (_lock held)

    def _emit(self, harness: _Harness, state: ManagerState) -> None:
        # END carries the failure; LOADING carries it while a retry is pending.
        retrying = harness.retry_at is not None
        error = harness.error if state is ManagerState.END or retrying else None
        self._pending_events.append(ServableState(harness.id, state, error))

    def _start_life(self, stream: dict[int, _Harness], aspired: AspiredVersion) -> None:
        harness = _Harness(aspired.id, aspired.loader)
        stream[aspired.id.version] = harness
        self._emit(harness, ManagerState.START)
        if aspired.loader is None:
            harness.state = ManagerState.END
            harness.error = aspired.error or Unknown(
                f"No loader for servable {aspired.id.name} version {aspired.id.version}"
            )
            logger.error(
                "Cannot load %s: %s", aspired.id, harness.error, extra=model_fields(aspired.id)
            )
            self._emit(harness, ManagerState.END)

    def _unaspire(self, stream: dict[int, _Harness], version: int, harness: _Harness) -> None:
        harness.aspired = False
        harness.reaspired = None
        if harness.retry_at is not None:  # waiting to retry: give up now, with its error
            harness.retry_at = None
            harness.state = ManagerState.END
            del stream[version]
            logger.warning(
                "Not retrying load of %s: no longer aspired",
                harness.id,
                extra=model_fields(harness.id),
            )
            self._emit(harness, ManagerState.END)
        elif harness.state is ManagerState.START:
            harness.state = ManagerState.END
            del stream[version]
            self._emit(harness, ManagerState.END)
        elif harness.state is ManagerState.END:
            del stream[version]

    def _apply(self, stream: dict[int, _Harness], action: ServableAction) -> bool:
        harness = stream.get(action.id.version)
        if action.action is Action.LOAD:
            if harness is None or harness.state is not ManagerState.START:
                logger.error("Policy asked to load %s, which is not in START", action.id)
                return False
            harness.state = ManagerState.LOADING
            self._submit(self._load_pool, "load", harness)
            return True
        if harness is None or harness.state is not ManagerState.AVAILABLE:
            logger.error("Policy asked to unload %s, which is not AVAILABLE", action.id)
            return False
        self._dispatch_unload(harness)
        return True

    def _dispatch_unload(self, harness: _Harness) -> None:
        harness.state = ManagerState.UNLOADING
        loaded = harness.loaded
        assert loaded is not None
        with self._serving_lock:
            versions = self._serving.get(harness.id.name, {})
            versions.pop(harness.id.version, None)
            loaded.close()
            self._update_latest(harness.id.name)
        self._emit(harness, ManagerState.UNLOADING)
        self._submit(self._unload_pool, "unload", harness)

    def _update_latest(self, name: str) -> None:
        """Recomputes the latest version of `name`; _serving_lock held."""
        versions = self._serving.get(name)
        if versions:
            self._latest[name] = versions[max(versions)]
        else:
            self._serving.pop(name, None)
            self._latest.pop(name, None)

    def _submit(self, pool: ThreadPoolExecutor, kind: str, harness: _Harness) -> None:
        for done in [f for f in self._futures if f.done()]:
            del self._futures[done]
        self._futures[pool.submit(self._run_worker, kind, harness)] = kind

    def _run_worker(self, kind: str, harness: _Harness) -> None:
        try:
            if kind == "load":
                self._load(harness)
            else:
                self._unload(harness)
        except Exception:
            logger.exception(
                "Manager %s worker failed on %s", kind, harness.id, extra=model_fields(harness.id)
            )

    # ----------------------------------------------------------------- events

    def _flush_events(self) -> None:
        """Publishes pending events in order; call without holding _lock."""
        with self._publish_lock:
            while True:
                with self._lock:
                    events, self._pending_events = self._pending_events, []
                if not events:
                    return
                for event in events:
                    self._log_event(event)
                    self._bus.publish(event)

    @staticmethod
    def _log_event(event: ServableState) -> None:
        # Upper-case extras become structured fields under the daemon's journald handler.
        fields = {**model_fields(event.id), "SERVABLE_STATE": event.manager_state.value}
        if event.error is not None and event.manager_state is ManagerState.END:
            logger.error(
                "Servable %s is %s: %s",
                event.id,
                event.manager_state.value,
                event.error,
                extra=fields,
            )
        else:  # a LOADING with an error was logged as the retry it schedules
            logger.info("Servable %s is %s", event.id, event.manager_state.value, extra=fields)

    # ----------------------------------------------------------------- the manage thread

    def _manage_loop(self) -> None:
        while True:
            self._wake.wait(self._options.manage_interval_s)
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
            try:
                self._manage_once()
            except Exception:
                logger.exception("Manager pass failed; retrying on the next pass")

    def _manage_once(self) -> None:
        with self._lock:
            if self._stopping:
                return
            policy = self._policy
            now = self._options.clock()
            for stream in self._streams.values():
                for harness in stream.values():
                    if harness.retry_at is not None and harness.retry_at <= now:
                        harness.retry_at = None
                        self._submit(self._load_pool, "load", harness)
                for _ in range(len(stream) + 1):
                    snapshot = [
                        AspiredServableStateSnapshot(h.id, h.state, h.aspired)
                        for h in stream.values()
                    ]
                    action = policy.get_next_action(snapshot)
                    if action is None or not self._apply(stream, action):
                        break
        self._flush_events()

    # ----------------------------------------------------------------- workers

    def _load(self, harness: _Harness) -> None:
        """One load attempt; a failure that may be retried schedules the next one."""
        loader = harness.loader
        assert loader is not None
        with self._lock:
            first = harness.attempts == 0
            if not harness.aspired or self._stopping:
                # Dispatched, then un-aspired before a worker was free: never load it.
                harness.state = ManagerState.END
                self._emit(harness, ManagerState.END)
                self._drop(harness)
                skip = True
            else:
                if first:
                    self._emit(harness, ManagerState.LOADING)
                harness.attempts += 1
                skip = False
        self._flush_events()
        if skip:
            self._wake.set()
            return
        servable: Any = None
        error: ServingError | None = None
        try:
            if first:
                estimate = loader.estimate_resources()
                logger.info(
                    "Estimated resources of %s: %s",
                    harness.id,
                    estimate,
                    extra=model_fields(harness.id),
                )
            loader.load()
            servable = loader.servable()
        except Exception as exc:
            error = _load_error(harness.id, exc)

        options = self._options
        with self._lock:
            if error is None:
                loaded = LoadedServable(harness.id, servable)
                harness.loaded = loaded
                harness.state = ManagerState.AVAILABLE
                harness.error = None
                with self._serving_lock:
                    self._serving.setdefault(harness.id.name, {})[harness.id.version] = loaded
                    self._update_latest(harness.id.name)
                self._emit(harness, ManagerState.AVAILABLE)
            else:
                harness.error = error
                retries = harness.attempts - 1
                fields = model_fields(harness.id)
                if error.code in PERMANENT_LOAD_ERRORS:
                    logger.error(
                        "Loading %s failed, not retrying (retries cannot fix %s): %s",
                        harness.id,
                        error.code,
                        error,
                        extra=fields,
                    )
                elif retries >= options.max_num_load_retries:
                    logger.error(
                        "Giving up loading %s after %d attempts: %s",
                        harness.id,
                        harness.attempts,
                        error,
                        extra=fields,
                    )
                elif not harness.aspired or self._stopping:
                    logger.warning(
                        "Not retrying load of %s: no longer aspired", harness.id, extra=fields
                    )
                else:
                    harness.retry_at = options.clock() + options.load_retry_interval_s
                    logger.warning(
                        "Loading %s failed: %s; retry %d of %d in %.1fs",
                        harness.id,
                        error,
                        retries + 1,
                        options.max_num_load_retries,
                        options.load_retry_interval_s,
                        extra=fields,
                    )
                    # Published once per failed attempt: status shows the latest error.
                    self._emit(harness, ManagerState.LOADING)
                if harness.retry_at is None:
                    harness.state = ManagerState.END
                    self._emit(harness, ManagerState.END)
                    self._drop(harness)
        self._flush_events()
        self._wake.set()

    def _drop(self, harness: _Harness) -> None:
        """Forgets a harness that reached END, unless it is still aspired; _lock held."""
        if harness.aspired:
            return  # kept in END so that repeats of it do not restart it
        stream = self._streams.get(harness.id.name)
        if stream is not None and stream.get(harness.id.version) is harness:
            del stream[harness.id.version]
            if harness.reaspired is not None and not self._stopping:
                self._start_life(stream, harness.reaspired)
            if not stream:
                del self._streams[harness.id.name]

    def _unload(self, harness: _Harness) -> None:
        loaded = harness.loaded
        loader = harness.loader
        assert loaded is not None and loader is not None
        warn_every = self._options.unload_handle_wait_warning_s
        started = time.monotonic()
        next_warning = started + warn_every
        while True:
            interrupts = loaded.interrupts  # before reading the deadline stop() may set
            now = time.monotonic()
            timeout = next_warning - now
            deadline = self._stop_deadline
            if deadline is not None:
                timeout = min(timeout, deadline - now)
            if loaded.wait_for_no_handles(max(0.0, timeout), interrupts_seen=interrupts):
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                logger.error(
                    "Not unloading %s: %d handle(s) still held at the shutdown deadline",
                    harness.id,
                    loaded.num_handles,
                    extra=model_fields(harness.id),
                )
                return
            if now >= next_warning:
                logger.warning(
                    "Unload of %s waits for %d handle(s) to be released (%.0fs so far)",
                    harness.id,
                    loaded.num_handles,
                    now - started,
                    extra=model_fields(harness.id),
                )
                next_warning = now + warn_every
        try:
            loader.unload()
        except Exception:
            logger.exception(
                "Unloading %s failed; dropping it anyway",
                harness.id,
                extra=model_fields(harness.id),
            )
        with self._lock:
            harness.loaded = None
            harness.state = ManagerState.END
            self._emit(harness, ManagerState.END)
            self._drop(harness)
        self._flush_events()
        self._wake.set()
