"""ModelServer: wires config -> source -> manager -> lookup -> API front ends.

Create and run it on the asyncio event loop (the gRPC server is bound to that loop);
the manager, the source and TensorFlow work on their own threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servingd.apis.admission import AdmissionOptions, InFlightLimiter
from servingd.apis.auth import BearerToken
from servingd.apis.grpc.server import GrpcFrontEnd, GrpcOptions
from servingd.apis.inference import InferenceRunner
from servingd.apis.model_info import ModelInfo
from servingd.apis.rest.server import RestApi, RestFrontEnd, RestOptions
from servingd.batching.registry import BatchingParameterRegistry
from servingd.batching.scheduler import SharedBatchScheduler
from servingd.batching.submitter import BatchSubmitter
from servingd.config.errors import ConfigError
from servingd.config.model_server_config import load_model_server_config, models_from_proto
from servingd.config.models import ModelConfig
from servingd.config.schema import RESTART_ONLY, SECRET
from servingd.config.settings import ServerSettings
from servingd.core.errors import FailedPrecondition, InvalidArgument, ServingError
from servingd.core.events import EventBus
from servingd.core.labels import VersionLabels
from servingd.core.lookup import ServableLookup
from servingd.core.manager import AspiredVersionsManager, ManagerOptions
from servingd.core.model_status import ModelStatus
from servingd.core.monitor import ServableStateMonitor
from servingd.core.states import ManagerState, ServableState
from servingd.core.thread_priority import lower_current_thread
from servingd.daemon.checks import check_machine
from servingd.daemon.health import OVERALL_HEALTH, HealthPublisher
from servingd.daemon.loaders import VersionLoaders, apply_batching
from servingd.daemon.model_diff import diff_models
from servingd.daemon.reload_status import RELOAD_SETTLE_TIMEOUT_S
from servingd.daemon.version_labels import LabelApplier
from servingd.sources.polling import PollingSource, SourceModelConfig
from servingd.sources.router import StoreRouter
from servingd.sources.version_store import LocalStore, VersionStore

log = logging.getLogger(__name__)

# num_load_threads 0: two loads side by side (a load waiting to retry holds none), enough
# for a small box; TensorFlow's own thread pools do the work of each load.
DEFAULT_LOAD_THREADS = 2
STATUS_REASON_CHARS = 160  # per model not serving, in STATUS= (the full text: /readyz)


# Settings that only a restart applies (the listeners and what is fixed when the loader,
# manager and source are built) and the secret ones: declared in config/schema.py. A
# reload that changes one logs a warning naming it.
RESTART_ONLY_SETTINGS = RESTART_ONLY
# Restart-only settings whose values must not be written to the log.
SECRET_SETTINGS = SECRET


@dataclass(frozen=True)
class ServingSummary:
    """The one-line state of the server (systemd STATUS=, servingctl status)."""

    models: int
    versions_available: int
    errors: int
    not_serving: tuple[tuple[str, str], ...] = ()  # (model, why) of models serving nothing

    def __str__(self) -> str:
        text = (
            f"{self.models} model{'s' if self.models != 1 else ''}, "
            f"{self.versions_available} version{'s' if self.versions_available != 1 else ''} "
            f"available, {self.errors} error{'s' if self.errors != 1 else ''}"
        )
        if self.not_serving:
            text += "; not serving: " + "; ".join(
                f"{m} ({_one_line(why)})" for m, why in self.not_serving
            )
        return text


def _one_line(text: str, limit: int = STATUS_REASON_CHARS) -> str:
    """STATUS= is one line: TensorFlow's multi-line errors are joined and cut short."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class ModelServer:
    def __init__(
        self,
        settings: ServerSettings,
        *,
        reload_status: Callable[[], Mapping[str, Any]] | None = None,
        on_config_file_changed: Callable[[], None] | None = None,
    ) -> None:
        """`reload_status` feeds GET /v1/servingd/reload; `on_config_file_changed`, when
        given, is called instead of reloading models.config alone when the polled
        --model_config_file changes (the daemon then re-reads its whole configuration)."""
        self._reload_status = reload_status
        self._on_config_file_changed = on_config_file_changed
        self.settings = settings
        self.bus: EventBus[ServableState] = EventBus()
        self.manager = AspiredVersionsManager(
            self.bus,
            ManagerOptions(
                num_load_threads=settings.num_load_threads or DEFAULT_LOAD_THREADS,
                num_unload_threads=max(1, settings.num_unload_threads),
                max_num_load_retries=settings.max_num_load_retries,
                load_retry_interval_s=settings.load_retry_interval_s,
            ),
        )
        # One shared batch scheduler for every batched model (threads start on first use).
        self.batching = BatchingParameterRegistry(
            SharedBatchScheduler(1, thread_nice=settings.compute_thread_nice)
        )
        self.loaders = VersionLoaders(
            settings,
            lambda: self.settings,
            lambda: self.models,
            self.batching,
            BatchSubmitter(self.batching.scheduler),
        )
        self.stores = StoreRouter(
            LocalStore(settings.file_system_poll_wait_s, settings.version_settle_s),
            functools.partial(_s3_store, settings),
        )
        self.source = PollingSource(
            [_source_model(m) for m in settings.models],
            self.loaders,
            poll_wait_s=settings.file_system_poll_wait_s,
            settle_s=settings.version_settle_s,
            fall_back=settings.fall_back_to_loadable_version,
            store_for=self.stores,
        )
        self.source.set_aspired_versions_callback(self.manager.set_aspired_versions)
        # The source hears of a failed load before the monitor does, so that a fallback
        # is pending by the time a waiter sees the failure (see serving_or_failed).
        self.bus.subscribe(self.source.on_servable_state)
        self.labels = VersionLabels(self.manager.list_available_versions)
        self.label_applier = LabelApplier(
            self.labels, lambda: self.settings.allow_version_labels_for_unavailable_models
        )
        # Before the monitor: once AVAILABLE can be seen, a label that waited for it is set.
        self.bus.subscribe(self.label_applier.on_state)
        self.monitor = ServableStateMonitor(self.bus)
        self.lookup = ServableLookup(self.manager, self.labels)
        self.status = ModelStatus(self.monitor, self.labels, self.source.errors)
        self.models: dict[str, ModelConfig] = {m.name: m for m in settings.models}
        # TensorFlow releases the GIL while it runs; these threads only wait on it.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(32, 4 * (os.cpu_count() or 1)),
            thread_name_prefix="servingd-run",
            initializer=functools.partial(lower_current_thread, settings.compute_thread_nice),
        )
        apply_batching(self.batching, settings, settings.models)
        self.runner = InferenceRunner(self.lookup, self.executor)
        self.model_info = ModelInfo(self.lookup, self.status)
        # One in-flight count across gRPC and REST: the cap is the server's, not a port's.
        self.limiter = InFlightLimiter(
            AdmissionOptions(
                max_in_flight=settings.max_in_flight,
                max_in_flight_per_model=settings.max_in_flight_per_model,
                max_tensor_elements=settings.max_tensor_elements,
            )
        )
        self.admin_token = BearerToken(settings.admin_token) if settings.admin_token else None
        self.grpc: GrpcFrontEnd | None = None
        self.rest: RestFrontEnd | None = None
        self.health = HealthPublisher(self.status, lambda: list(self.models))
        self._reload_lock = asyncio.Lock()
        self._config_poll: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts loading and listening; returns at once (see wait_until_settled)."""
        s = self.settings
        loop = asyncio.get_running_loop()

        # Health follows every state change; the bus publishes on manager threads.
        def on_state(_event: ServableState) -> None:
            loop.call_soon_threadsafe(self.health.schedule)

        self.bus.subscribe(on_state)
        self.manager.start()
        await asyncio.to_thread(self.source.start)
        if s.grpc_port or s.grpc_socket_path:
            self.grpc = GrpcFrontEnd(
                GrpcOptions(
                    port=s.grpc_port,
                    bind_address=s.grpc_bind_address,
                    socket_path=s.grpc_socket_path,
                    channel_arguments=s.grpc_channel_arguments,
                    tls=s.grpc_tls,
                    check_method_name=s.enable_signature_method_name_check,
                    max_receive_message_bytes=s.grpc_max_receive_bytes,
                    limiter=self.limiter,
                    admin_token=self.admin_token,
                ),
                self.runner,
                self.model_info,
                reload_config=self.handle_reload_config_request,
            )
            await self.grpc.start()
            await self.grpc.set_serving(OVERALL_HEALTH, False)
            self.health.target = self.grpc
        if s.rest_port:
            api = RestApi(
                self.runner,
                self.model_info,
                RestOptions(
                    port=s.rest_port,
                    bind_address=s.rest_bind_address,
                    timeout_ms=s.rest_timeout_ms,
                    enable_cors=s.rest_enable_cors,
                    prometheus_path=s.prometheus_path,
                    check_method_name=s.enable_signature_method_name_check,
                    max_body_bytes=s.rest_max_body_bytes,
                    tls=s.rest_tls,
                    limiter=self.limiter,
                    admin_token=self.admin_token,
                ),
                model_names=lambda: list(self.models),
                reload_status=self._reload_status,
                source_status=self.source_status,
            )
            self.rest = RestFrontEnd(api.options, api, drain_grace_s=s.drain_grace_s)
            await self.rest.start()
        elif s.prometheus_path:
            log.warning("Prometheus metrics are configured but --rest_api_port is 0: not served")
        if s.model_config_file and s.model_config_file_poll_wait_s > 0:
            self._config_poll = asyncio.create_task(self._poll_model_config_file())

    async def _poll_model_config_file(self) -> None:
        """--model_config_file_poll_wait_seconds: re-read the file; a bad one changes nothing."""
        path = self.settings.model_config_file
        last = await asyncio.to_thread(_read_bytes, path)
        while True:
            await asyncio.sleep(self.settings.model_config_file_poll_wait_s)
            current = await asyncio.to_thread(_read_bytes, path)
            if current == last:
                continue
            last = current
            if self._on_config_file_changed is not None:
                self._on_config_file_changed()
                continue
            try:
                models = await asyncio.to_thread(load_model_server_config, path)
                await self.reload_models(models, RELOAD_SETTLE_TIMEOUT_S)
            except ConfigError as exc:
                log.error("model config not reloaded, the running one stays: %s", exc)
            except ServingError as exc:
                log.error("model config reloaded with errors: %s", exc)

    async def wait_until_settled(self, timeout: float) -> bool:
        """Waits until every model is serving or has a recorded failure (serving_or_failed):
        READY=1 says every model is up or why it is not; retries go on after it."""
        settled = await self._wait_serving_or_failed(list(self.models), timeout)
        await self.apply_labels()
        await self.update_health()
        return settled

    async def _wait_serving_or_failed(self, names: Sequence[str], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settled = False
        # Waits in short slices so that a cancelled wait (SIGTERM while loading) leaves no
        # thread blocked behind it for long, and so that a fallback that publishes no
        # event (an older version re-aspired while still loaded) is seen.
        while not settled and loop.time() < deadline:
            settled = await asyncio.to_thread(
                self.monitor.wait_until,
                lambda: all(self.serving_or_failed(n) for n in names),
                min(1.0, deadline - loop.time()),
            )
        if not settled:
            pending = [n for n in names if not self.serving_or_failed(n)]
            log.warning("models still loading after %.0f s: %s", timeout, ", ".join(pending))
        return bool(settled)

    def serving_or_failed(self, name: str) -> bool:
        """True when the model has a version AVAILABLE and none still on its first load
        attempt, or nothing left to wait for: every known version failed (or failed its
        first attempt and waits to retry), no fallback is pending, no version being written
        is waited for (poll wait 0), or its base path cannot be listed. A model whose
        versions are all still loading is not settled."""
        states = self.monitor.get_versions(name).values()
        if self.source.fallback_pending(name) or self.source.awaiting_settle(name):
            return False
        return not any(_first_attempt_running(s) for s in states)

    def _apply_labels(self, names: Sequence[str]) -> list[str]:
        """Sets the models' labels; those refused are applied again when their version is
        AVAILABLE (LabelApplier). Returns the refusals."""
        return self.label_applier.apply((n, self.models[n].version_labels) for n in names)

    async def apply_labels(self) -> None:
        for error in self._apply_labels(list(self.models)):
            log.error("version labels not applied yet (retried when AVAILABLE): %s", error)

    async def reload_models(self, models: Sequence[ModelConfig], timeout: float) -> None:
        """Serves exactly `models` from now on; returns once the added or changed ones settled.

        Unchanged models are not touched (no reload); removed ones are unloaded; labels are
        applied last, and a label that cannot be applied raises FailedPrecondition after
        everything else took effect (as TF Serving's ServerCore::ReloadConfig).
        """
        async with self._reload_lock:
            await self._reload_models(models, timeout)

    async def _reload_models(self, models: Sequence[ModelConfig], timeout: float) -> None:
        await asyncio.to_thread(check_machine, self.settings, models)
        diff = diff_models(self.models, models)
        log.info("applying model config: %s", diff.describe())
        self.models = diff.models
        # Batching changes apply to the next batch; the model is not reloaded for them.
        apply_batching(self.batching, self.settings, models)
        await asyncio.to_thread(self.source.update_config, [_source_model(m) for m in models])
        for name in diff.removed:
            self.label_applier.forget(name)
        await self._wait_serving_or_failed(diff.changed, timeout)
        await self.update_health()
        errors = self._apply_labels(diff.changed)
        if errors:
            raise FailedPrecondition("; ".join(errors))

    async def apply_settings(self, settings: ServerSettings, timeout: float) -> None:
        """Applies a new, validated configuration (SIGHUP); serialized with other reloads.

        Applied live: the models (added, removed, changed: base path, version policy,
        labels, batching, device; unchanged ones are not touched), the log level and the
        settings read per request. Settings in RESTART_ONLY_SETTINGS keep their running
        value, with a warning. Raises FailedPrecondition (after everything else took
        effect) when version labels could not be applied; ConfigError, with nothing
        changed, when the machine cannot honour the configuration (check_machine).
        """
        from servingd.daemon.logging_setup import set_level

        old = self.settings
        pending = [
            name for name in RESTART_ONLY_SETTINGS if getattr(settings, name) != getattr(old, name)
        ]
        for name in pending:
            if name in SECRET_SETTINGS:  # keys and tokens stay out of the journal
                log.warning(
                    "setting %s changed: takes effect on restart "
                    "(systemctl restart servingd); the running value stays",
                    name,
                )
                continue
            log.warning(
                "setting %s changed from %r to %r: takes effect on restart "
                "(systemctl restart servingd); the running value stays",
                name,
                getattr(old, name),
                getattr(settings, name),
            )
        # Refused whole before anything changes (a model's device missing here, ...).
        await asyncio.to_thread(check_machine, settings, settings.models)
        kept = {name: getattr(old, name) for name in RESTART_ONLY_SETTINGS}
        if settings.log_level != old.log_level:
            set_level(settings.log_level)
            log.info("log level is now %s", settings.log_level)
        async with self._reload_lock:
            self.settings = dataclasses.replace(settings, **kept)
            await self._reload_models(settings.models, timeout)

    def summary(self) -> ServingSummary:
        """Configured models, their AVAILABLE versions, and errors (failed versions and
        base paths that cannot be listed)."""
        names = list(self.models)
        available = 0
        errors = 0
        for name in names:
            for state in self.monitor.get_versions(name).values():
                if state.manager_state is ManagerState.AVAILABLE:
                    available += 1
                elif state.error is not None:
                    errors += 1
        errors += sum(1 for name in self.source.errors() if name in self.models)
        not_serving = tuple(
            (name, reason)
            for name in sorted(names)
            if (reason := self.status.not_ready_reason(name)) is not None
        )
        return ServingSummary(len(names), available, errors, not_serving)

    def source_status(self) -> dict[str, dict[str, Any]]:
        """Per model: base path, state ("ok" or "error"), message, last successful listing."""
        return {
            name: {
                "base_path": status.base_path,
                "state": status.state,
                "message": status.message,
                "last_listed": status.last_listed,
            }
            for name, status in self.source.status().items()
        }

    async def handle_reload_config_request(self, config: Any) -> None:
        """ModelService.HandleReloadConfigRequest: a whole ModelServerConfig proto."""
        try:
            models = models_from_proto(config, "HandleReloadConfigRequest")
        except ConfigError as exc:
            raise InvalidArgument(str(exc)) from None
        try:
            await self.reload_models(models, RELOAD_SETTLE_TIMEOUT_S)
        except ConfigError as exc:
            raise InvalidArgument(str(exc)) from None

    async def update_health(self) -> None:
        await self.health.update()

    async def stop(self, grace: float) -> None:
        """Stops listening, lets in-flight calls finish within `grace`, unloads everything."""
        if self._config_poll is not None:
            self._config_poll.cancel()
        stopping = []
        if self.grpc is not None:
            await self.grpc.set_serving(OVERALL_HEALTH, False)
            stopping.append(self.grpc.stop(grace))
        if self.rest is not None:
            stopping.append(self.rest.stop())
        await asyncio.gather(*stopping)
        self.stores.close()
        await asyncio.to_thread(self.source.stop)
        await asyncio.to_thread(self.batching.scheduler.stop, grace)
        await asyncio.to_thread(self.manager.stop, grace)
        self.executor.shutdown(wait=False, cancel_futures=True)


def _first_attempt_running(state: ServableState) -> bool:
    """START, or LOADING with no failed attempt yet (a failed one carries its error)."""
    if state.manager_state is ManagerState.START:
        return True
    return state.manager_state is ManagerState.LOADING and state.error is None


def _s3_store(settings: ServerSettings) -> VersionStore:
    from servingd.sources.s3.options import S3Options
    from servingd.sources.s3.store import S3Store

    return S3Store(
        S3Options.from_settings(
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            path_style=settings.s3_path_style,
            ca_bundle=settings.s3_ca_bundle,
            poll_interval_s=settings.s3_poll_interval_s,
            settle_s=settings.s3_settle_s,
            cache_dir=settings.s3_cache_dir,
            credentials=settings.s3_credentials,
            environ=os.environ,
        )
    )


def _source_model(model: ModelConfig) -> SourceModelConfig:
    return SourceModelConfig(model.name, model.base_path, model.version_policy)


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None
