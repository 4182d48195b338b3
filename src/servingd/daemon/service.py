"""The daemon's life on the event loop: start, SIGHUP reloads, SIGTERM drain, sd_notify.

Contract (what a sysadmin and systemd see):
- start: listeners up at once; READY=1 with STATUS= once every configured model serves a
  version or has a recorded failure (ModelServer.serving_or_failed: retries go on after
  READY). The pid file (if set) is written at start and removed at exit.
- SIGHUP (ExecReload= runs `servingctl reload`, which sends it and waits for the outcome
  on GET /v1/servingd/reload): RELOADING=1, then the whole configuration is re-read from
  the same command line and files. Valid: the difference is applied (ModelServer
  .apply_settings) while requests keep being served. Invalid: nothing changes, the error
  (file:line) is logged and shown in STATUS=. Then READY=1. Reloads run one at a time;
  SIGHUPs that arrive during a reload are merged into one more reload after it.
- SIGTERM/SIGINT: STOPPING=1, stop accepting requests, let in-flight ones finish within
  drain_grace_seconds, unload the models; run() returns 0.
- WATCHDOG=1 every WatchdogSec/2 from the event loop, when systemd armed the watchdog.
- STATUS= follows servable state changes: "3 models, 4 versions available, 0 errors",
  then "; not serving: MODEL (why)" for each model that serves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Sequence

from servingd.config.errors import ConfigError
from servingd.config.load import load_settings
from servingd.config.settings import ServerSettings
from servingd.core.errors import ServingError
from servingd.core.states import ServableState
from servingd.daemon import reload_status
from servingd.daemon.gc_freeze import freeze_startup_objects
from servingd.daemon.systemd_notify import SystemdNotifier

log = logging.getLogger("servingd")

STARTUP_SETTLE_TIMEOUT_S = 3600.0
STATUS_DEBOUNCE_S = 0.2


class Service:
    """Runs one ModelServer for `argv` (re-read on SIGHUP) until SIGTERM/SIGINT."""

    def __init__(
        self,
        argv: Sequence[str],
        settings: ServerSettings,
        notifier: SystemdNotifier | None = None,
        load: Callable[[Sequence[str]], ServerSettings] = load_settings,
    ) -> None:
        self.argv = list(argv)
        self.settings = settings
        self.notifier = notifier or SystemdNotifier()
        self._load = load
        self.reloads = reload_status.ReloadStatus()
        self.config_error = ""  # the last refused config, shown in STATUS= until a good one
        self._stop = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        self._status_task: asyncio.Task[None] | None = None
        self._ready = False
        self._pid_file = ""  # the one written at start (pid_file is a restart-only setting)

    def request_reload(self) -> None:
        """Signal-safe on the loop: one reload runs after the current one (if any)."""
        self._reload_wanted.set()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, hangup_pending: Callable[[], bool] = lambda: False) -> int:
        """Serves until SIGTERM/SIGINT; `hangup_pending` tells whether a SIGHUP arrived
        before the loop's handler was installed (it is then honoured once ready)."""
        from servingd.daemon.model_server import ModelServer

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if hangup_pending():
            self.request_reload()
        self.server = ModelServer(
            self.settings,
            reload_status=self.reloads.as_dict,
            on_config_file_changed=self.request_reload,
        )

        def on_state(_event: ServableState) -> None:  # on manager threads
            loop.call_soon_threadsafe(self._schedule_status)

        self.server.bus.subscribe(on_state)
        self._write_pid_file()
        # No model is loaded yet (see gc_freeze; TensorFlow, imported with the first
        # SavedModel version, is frozen then: loaders.saved_model_loader_class).
        freeze_startup_objects()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.server.start()
            self.notifier.status("loading models")
            tasks.append(asyncio.create_task(self._startup()))
            interval = self.notifier.watchdog_interval_s()
            if interval is not None:
                tasks.append(asyncio.create_task(self._watchdog(interval)))
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await self._shutdown()
        return 0

    async def _startup(self) -> None:
        await self.server.wait_until_settled(STARTUP_SETTLE_TIMEOUT_S)
        self._ready = True
        summary = self.status_line()
        log.info("ready: %s", summary)
        self.notifier.ready(summary)
        while True:  # reloads start only once ready: they are serialized after startup
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self.reload()

    async def reload(self) -> None:
        """Re-reads the whole configuration and applies it, or keeps the running one."""
        self.reloads.begin()
        self.notifier.reloading()
        log.info("reloading configuration")
        try:
            new = await asyncio.to_thread(self._load, self.argv)
        except ConfigError as exc:
            self.config_error = f"config error: {exc} — running config kept"
            log.error(
                "configuration refused, the running one stays: %s",
                exc,
                extra={"CONFIG_FILE": exc.path},
            )
            self.reloads.finish(reload_status.REFUSED, str(exc))
        except Exception as exc:  # a bug in a reader must not end reloading for good
            log.exception("configuration could not be read, the running one stays")
            self.config_error = f"config error: {exc} — running config kept"
            self.reloads.finish(reload_status.REFUSED, f"internal error: {exc}")
        else:
            self.config_error = ""
            try:
                await self.server.apply_settings(new, reload_status.RELOAD_SETTLE_TIMEOUT_S)
            except ConfigError as exc:  # refused before anything changed
                self.config_error = f"config error: {exc} — running config kept"
                log.error("configuration refused, the running one stays: %s", exc)
                self.reloads.finish(reload_status.REFUSED, str(exc))
            except ServingError as exc:
                log.error("configuration applied with errors: %s", exc)
                self.reloads.finish(reload_status.APPLIED_WITH_ERRORS, str(exc))
            else:
                self.settings = new
                log.info("configuration reloaded: %s", self.server.summary())
                self.reloads.finish(reload_status.OK, "")
        self.notifier.ready(self.status_line())

    def status_line(self) -> str:
        summary = str(self.server.summary())
        return f"{self.config_error}; {summary}" if self.config_error else summary

    def _schedule_status(self) -> None:
        if self._status_task is None or self._status_task.done():
            self._status_task = asyncio.create_task(self._publish_status())

    async def _publish_status(self) -> None:
        await asyncio.sleep(STATUS_DEBOUNCE_S)  # one STATUS= for a burst of state changes
        if self._ready and not self._stop.is_set():
            self.notifier.status(self.status_line())

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            # STATUS= also counts base paths that cannot be listed (an S3 store down),
            # which no servable state change announces.
            self._schedule_status()
            await asyncio.sleep(interval)

    async def _shutdown(self) -> None:
        grace = self.server.settings.drain_grace_s
        self.notifier.stopping()
        self.notifier.status(f"stopping: draining requests for up to {grace:g} s")
        log.info("stopping: draining in-flight requests for up to %g s", grace)
        await self.server.stop(grace)
        self._remove_pid_file()
        log.info("stopped")

    def _write_pid_file(self) -> None:
        path = self.settings.pid_file
        if not path:
            return
        self._pid_file = path
        try:
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write pid file %s: %s", path, exc)

    def _remove_pid_file(self) -> None:
        if self._pid_file:
            with contextlib.suppress(OSError):
                os.unlink(self._pid_file)
