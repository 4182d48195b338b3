"""AspiredVersionsManager: the life of versions, handles, retries, policies, stop."""

from __future__ import annotations

import logging
import threading

import pytest

from servingd.core.errors import DataLoss, NotFound, ServingError, Unavailable, Unknown
from servingd.core.ids import ServableId
from servingd.core.manager import AspiredVersionsManager
from servingd.core.policy import ResourcePreservingPolicy
from servingd.core.source import AspiredVersion
from servingd.core.states import ManagerState
from tests.unit.conftest import MakeManager
from tests.unit.fakes import WAIT_S, FakeLoader, FakeServable, Recorder

S = ManagerState
M = "model"


def aspire(manager: AspiredVersionsManager, *loaders: FakeLoader, name: str = M) -> None:
    manager.set_aspired_versions(name, [AspiredVersion(ld.id, ld) for ld in loaders])


def loader(version: int, name: str = M, **kwargs: object) -> FakeLoader:
    return FakeLoader(ServableId(name, version), **kwargs)  # type: ignore[arg-type]


def serve(
    make_manager: MakeManager, version: int = 1, **options: object
) -> tuple[AspiredVersionsManager, Recorder, FakeLoader]:
    """A manager already serving `version` of M."""
    manager, recorder = make_manager(**options)
    first = loader(version)
    aspire(manager, first)
    recorder.wait_state(M, version, S.AVAILABLE)
    return manager, recorder, first


def after(recorder: Recorder, version: int, state: ManagerState) -> list[tuple[int, str]]:
    """The trace of M after the first (version, state) event."""
    trace = recorder.trace(M)
    return trace[trace.index((version, state.value)) + 1 :]


# ------------------------------------------------------------------- loading and lookup


def test_aspired_version_goes_start_loading_available(make_manager: MakeManager) -> None:
    manager, recorder, first = serve(make_manager)
    assert recorder.trace(M) == [(1, "START"), (1, "LOADING"), (1, "AVAILABLE")]
    assert first.calls[:3] == ["estimate_resources", "load", "servable"]
    with manager.get_handle(M) as handle:
        assert handle.id == ServableId(M, 1)
        assert isinstance(handle.servable, FakeServable)
        assert handle.servable.loader is first
    assert manager.available_ids() == [ServableId(M, 1)]
    assert manager.list_available_versions(M) == [1]


def test_get_handle_latest_specific_and_not_found(make_manager: MakeManager) -> None:
    manager, recorder = make_manager()
    aspire(manager, loader(1), loader(2))
    recorder.wait_state(M, 1, S.AVAILABLE)
    recorder.wait_state(M, 2, S.AVAILABLE)
    with manager.get_handle(M) as latest, manager.get_handle(M, 1) as specific:
        assert latest.id.version == 2
        assert specific.id.version == 1
    assert manager.list_available_versions(M) == [1, 2]
    with pytest.raises(NotFound, match=r"^Servable not found for request: Specific\(model, 3\)$"):
        manager.get_handle(M, 3)
    with pytest.raises(NotFound, match=r"^Servable not found for request: Latest\(other\)$"):
        manager.get_handle("other")


def test_streams_are_independent(make_manager: MakeManager) -> None:
    manager, recorder = make_manager()
    aspire(manager, loader(1, "a"), name="a")
    aspire(manager, loader(7, "b"), name="b")
    recorder.wait_state("a", 1, S.AVAILABLE)
    recorder.wait_state("b", 7, S.AVAILABLE)
    assert manager.available_ids() == [ServableId("a", 1), ServableId("b", 7)]
    aspire(manager, name="a")
    recorder.wait_state("a", 1, S.END)
    assert manager.available_ids() == [ServableId("b", 7)]


def test_aspired_versions_wait_for_start(make_manager: MakeManager) -> None:
    manager, recorder = make_manager(start=False)
    first = loader(1)
    aspire(manager, first)
    assert recorder.trace(M) == [(1, "START")]
    assert first.calls == []
    manager.start()
    recorder.wait_state(M, 1, S.AVAILABLE)


def test_unaspired_before_load_ends_without_loading(make_manager: MakeManager) -> None:
    manager, recorder = make_manager(start=False)
    first = loader(1)
    aspire(manager, first)
    aspire(manager)
    assert recorder.trace(M) == [(1, "START"), (1, "END")]
    assert recorder.last(M, 1).error is None
    manager.start()
    assert not first.load_started.wait(0.1)
    assert first.calls == []


def test_no_loader_reports_end_with_the_source_error(make_manager: MakeManager) -> None:
    manager, recorder = make_manager()
    error = Unavailable("cannot build a loader for model version 4: bad path")
    manager.set_aspired_versions(M, [AspiredVersion(ServableId(M, 4), None, error)])
    assert recorder.trace(M) == [(4, "START"), (4, "END")]
    assert recorder.last(M, 4).error is error


# ------------------------------------------------------------------- unloading and handles


def test_unload_waits_for_the_last_handle(make_manager: MakeManager) -> None:
    manager, recorder, first = serve(make_manager)
    handle = manager.get_handle(M, 1)
    aspire(manager)
    recorder.wait_state(M, 1, S.UNLOADING)
    with pytest.raises(NotFound):
        manager.get_handle(M)  # no new handles once UNLOADING
    assert not first.unloaded.wait(0.2), "unloaded while a handle was held"
    assert not recorder.has(M, 1, S.END)
    assert not handle.servable.unloaded
    handle.release()
    handle.release()  # idempotent
    recorder.wait_state(M, 1, S.END)
    assert first.unloaded.is_set()
    assert first.calls[-1] == "unload"


def test_unload_wait_logs_a_warning(make_manager: MakeManager) -> None:
    manager, recorder, _ = serve(make_manager, unload_handle_wait_warning_s=0.05)
    warned = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waits for 1 handle(s)" in record.getMessage():
                warned.set()

    watch = Watch(logging.WARNING)
    logging.getLogger("servingd.core.manager").addHandler(watch)
    try:
        handle = manager.get_handle(M)
        aspire(manager)
        ok = warned.wait(WAIT_S)
        handle.release()
    finally:
        logging.getLogger("servingd.core.manager").removeHandler(watch)
    assert ok
    recorder.wait_state(M, 1, S.END)


def test_version_readded_after_end_starts_a_fresh_life(make_manager: MakeManager) -> None:
    manager, recorder, first = serve(make_manager)
    aspire(manager)
    recorder.wait_state(M, 1, S.END)
    second = loader(1)
    aspire(manager, second)
    recorder.wait_state(M, 1, S.AVAILABLE, times=2)
    with manager.get_handle(M) as handle:
        assert handle.servable.loader is second
    assert first.calls.count("load") == 1


def test_version_reaspired_while_unloading_is_loaded_again(make_manager: MakeManager) -> None:
    manager, recorder, _first = serve(make_manager)
    handle = manager.get_handle(M)
    aspire(manager)
    recorder.wait_state(M, 1, S.UNLOADING)
    second = loader(1)
    aspire(manager, second)
    assert not second.load_started.wait(0.1)
    handle.release()
    recorder.wait_state(M, 1, S.AVAILABLE, times=2)
    assert after(recorder, 1, S.UNLOADING) == [
        (1, "END"),
        (1, "START"),
        (1, "LOADING"),
        (1, "AVAILABLE"),
    ]
    with manager.get_handle(M) as fresh:
        assert fresh.servable.loader is second


def test_repeated_version_keeps_its_original_loader(make_manager: MakeManager) -> None:
    manager, recorder, first = serve(make_manager)
    ignored = loader(1)
    aspire(manager, ignored)
    aspire(manager, ignored, loader(2))
    recorder.wait_state(M, 2, S.AVAILABLE)
    with manager.get_handle(M, 1) as handle:
        assert handle.servable.loader is first
    assert ignored.calls == []


# ------------------------------------------------------------------- failures and retries


def test_failing_load_retries_then_ends_and_old_version_keeps_serving(
    make_manager: MakeManager,
) -> None:
    manager, recorder, _first = serve(make_manager)
    bad = loader(2, always_fail=True, error=ValueError("corrupt variables file"))
    aspire(manager, bad)  # like Latest(1): version 1 is no longer aspired
    recorder.wait_state(M, 2, S.END)
    error = recorder.last(M, 2).error
    assert isinstance(error, Unknown)
    assert "model" in str(error) and "version 2" in str(error)
    assert "corrupt variables file" in str(error)
    assert bad.load_attempts == 3  # one attempt + max_num_load_retries
    assert isinstance(error.__cause__, ValueError)
    assert not recorder.has(M, 1, S.UNLOADING)
    with manager.get_handle(M) as handle:
        assert handle.id.version == 1
    # Repeating the failed version does not retry it.
    aspire(manager, bad)
    assert not recorder.wait_for(lambda: bad.load_attempts > 3, timeout=0.1)
    assert recorder.trace(M)[-1] == (2, "END")


def test_load_that_fails_then_succeeds_becomes_available(make_manager: MakeManager) -> None:
    manager, recorder = make_manager()
    flaky = loader(1, fail_times=2)
    aspire(manager, flaky)
    recorder.wait_state(M, 1, S.AVAILABLE)
    assert flaky.load_attempts == 3
    # Each failed attempt is published as LOADING with its error; the last state has none.
    assert recorder.trace(M) == [(1, "START")] + [(1, "LOADING")] * 3 + [(1, "AVAILABLE")]
    assert [e.error is not None for e in recorder.events[1:4]] == [False, True, True]
    assert recorder.last(M, 1).error is None


def test_serving_errors_are_kept_as_raised(make_manager: MakeManager) -> None:
    manager, recorder = make_manager(max_num_load_retries=0)
    error = Unavailable("model version 1: device busy")
    aspire(manager, loader(1, always_fail=True, error=error))
    recorder.wait_state(M, 1, S.END)
    assert recorder.last(M, 1).error is error


def test_retry_wait_ends_when_version_is_no_longer_aspired(make_manager: MakeManager) -> None:
    manager, recorder = make_manager(load_retry_interval_s=60.0)
    bad = loader(1, always_fail=True)
    aspire(manager, bad)
    assert bad.load_started.wait(WAIT_S)
    aspire(manager)
    recorder.wait_state(M, 1, S.END)  # well before the 60 s retry interval
    assert bad.load_attempts == 1
    assert isinstance(recorder.last(M, 1).error, ServingError)


def test_failed_version_can_be_retried_after_it_was_omitted(make_manager: MakeManager) -> None:
    manager, recorder = make_manager(max_num_load_retries=0)
    aspire(manager, loader(1, always_fail=True))
    recorder.wait_state(M, 1, S.END)
    aspire(manager)
    fixed = loader(1)
    aspire(manager, fixed)
    recorder.wait_state(M, 1, S.AVAILABLE)
    assert recorder.last(M, 1).error is None


class FakeClock:
    """The manager's clock for retry waits: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_retry_wait_holds_no_load_thread(make_manager: MakeManager) -> None:
    clock = FakeClock()
    manager, recorder = make_manager(
        num_load_threads=1, load_retry_interval_s=60.0, max_num_load_retries=5, clock=clock
    )
    bad = loader(1, "a", always_fail=True)
    aspire(manager, bad, name="a")
    recorder.wait_for(lambda: recorder.last("a", 1).error is not None)
    state = recorder.last("a", 1)
    assert (state.manager_state, bad.load_attempts) == (S.LOADING, 1)
    # The only load thread is free: another model loads while "a" waits for its retry.
    aspire(manager, loader(1, "b"), name="b")
    recorder.wait_state("b", 1, S.AVAILABLE)
    assert bad.load_attempts == 1  # the clock did not move: no retry yet
    clock.now += 60.0
    recorder.wait_for(lambda: bad.load_attempts == 2)
    assert recorder.count("a", 1, S.LOADING) == 3  # first attempt, then one per failure


def test_errors_retrying_cannot_fix_end_at_once(make_manager: MakeManager) -> None:
    manager, recorder = make_manager(max_num_load_retries=5)
    for version, error in ((1, NotFound("no saved_model.pb")), (2, DataLoss("cannot parse"))):
        broken = loader(version, always_fail=True, error=error)
        aspire(manager, broken)
        recorder.wait_state(M, version, S.END)
        assert broken.load_attempts == 1
        assert recorder.last(M, version).error is error


def test_unaspired_while_waiting_to_retry_ends_with_its_error(make_manager: MakeManager) -> None:
    clock = FakeClock()
    manager, recorder = make_manager(load_retry_interval_s=60.0, clock=clock)
    bad = loader(1, always_fail=True)
    aspire(manager, bad)
    recorder.wait_for(lambda: recorder.last(M, 1).error is not None)
    aspire(manager)
    assert recorder.last(M, 1).manager_state is S.END  # synchronously, no load thread involved
    assert isinstance(recorder.last(M, 1).error, Unknown)
    clock.now += 600.0
    assert bad.load_attempts == 1


# ------------------------------------------------------------------- policies


AVAILABILITY_ORDER = [
    (2, "START"),
    (2, "LOADING"),
    (2, "AVAILABLE"),
    (1, "UNLOADING"),
    (1, "END"),
]
RESOURCE_ORDER = [
    (2, "START"),
    (1, "UNLOADING"),
    (1, "END"),
    (2, "LOADING"),
    (2, "AVAILABLE"),
]


def test_availability_preserving_loads_new_before_unloading_old(
    make_manager: MakeManager,
) -> None:
    manager, recorder, _ = serve(make_manager)
    aspire(manager, loader(2))
    recorder.wait_state(M, 1, S.END)
    assert after(recorder, 1, S.AVAILABLE) == AVAILABILITY_ORDER


def test_resource_preserving_unloads_old_before_loading_new(make_manager: MakeManager) -> None:
    manager, recorder, _ = serve(make_manager, policy=ResourcePreservingPolicy())
    aspire(manager, loader(2))
    recorder.wait_state(M, 2, S.AVAILABLE)
    assert after(recorder, 1, S.AVAILABLE) == RESOURCE_ORDER


def test_policy_switch_applies_to_the_next_transition(make_manager: MakeManager) -> None:
    manager, recorder, _ = serve(make_manager)
    aspire(manager, loader(2))
    recorder.wait_state(M, 1, S.END)
    manager.set_policy(ResourcePreservingPolicy())
    aspire(manager, loader(3))
    recorder.wait_state(M, 3, S.AVAILABLE)
    assert after(recorder, 2, S.AVAILABLE) == [
        (1, "UNLOADING"),
        (1, "END"),
        (3, "START"),
        (2, "UNLOADING"),
        (2, "END"),
        (3, "LOADING"),
        (3, "AVAILABLE"),
    ]


def test_new_version_appearing_mid_load(make_manager: MakeManager) -> None:
    manager, recorder, _ = serve(make_manager)
    gate = threading.Event()
    slow = loader(2, gate=gate)
    aspire(manager, slow)
    recorder.wait_state(M, 2, S.LOADING)
    aspire(manager, loader(3))
    recorder.wait_state(M, 3, S.AVAILABLE)
    recorder.wait_state(M, 1, S.END)
    # Version 1 served until version 3 was available.
    trace = recorder.trace(M)
    assert trace.index((3, "AVAILABLE")) < trace.index((1, "UNLOADING"))
    with manager.get_handle(M) as handle:
        assert handle.id.version == 3
    gate.set()
    recorder.wait_state(M, 2, S.END)  # loaded, no longer aspired, so unloaded
    assert slow.unloaded.is_set()
    assert manager.list_available_versions(M) == [3]


def test_queued_load_of_a_version_unaspired_meanwhile_is_skipped(
    make_manager: MakeManager,
) -> None:
    manager, recorder = make_manager(num_load_threads=1, policy=ResourcePreservingPolicy())
    gate = threading.Event()
    aspire(manager, loader(1, "blocker", gate=gate), name="blocker")
    recorder.wait_state("blocker", 1, S.LOADING)
    queued = loader(1)
    aspire(manager, queued)  # dispatched, but the only load thread is busy
    assert not queued.load_started.wait(0.1)
    aspire(manager)
    gate.set()
    recorder.wait_state(M, 1, S.END)
    assert queued.calls == []
    assert recorder.trace(M) == [(1, "START"), (1, "END")]


# ------------------------------------------------------------------- concurrency and stop


def test_concurrent_get_handle_during_churn_never_sees_an_unloaded_servable(
    make_manager: MakeManager,
) -> None:
    manager, recorder, _ = serve(make_manager, manage_interval_s=0.005)
    stop = threading.Event()
    violations: list[str] = []
    served: list[int] = []

    def client() -> None:
        count = 0
        while not stop.is_set():
            try:
                handle = manager.get_handle(M)
            except NotFound:
                continue
            with handle:
                for _ in range(3):
                    if handle.servable.unloaded:
                        violations.append(f"got unloaded {handle.id}")
                count += 1
        served.append(count)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        for version in range(2, 12):
            aspire(manager, loader(version))
            recorder.wait_state(M, version, S.AVAILABLE)
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT_S)
    assert not violations
    assert len(served) == 6 and sum(served) > 0
    recorder.wait_state(M, 10, S.END)


def test_stop_unloads_everything(make_manager: MakeManager) -> None:
    manager, recorder = make_manager()
    loaders = [loader(1), loader(2), loader(1, "other")]
    aspire(manager, *loaders[:2])
    aspire(manager, loaders[2], name="other")
    recorder.wait_state("other", 1, S.AVAILABLE)
    recorder.wait_state(M, 2, S.AVAILABLE)
    recorder.wait_state(M, 1, S.AVAILABLE)
    assert manager.stop(timeout=WAIT_S)
    assert all(ld.unloaded.is_set() for ld in loaders)
    assert manager.available_ids() == []
    assert recorder.last(M, 2).manager_state is S.END
    aspire(manager, loader(3))  # ignored after stop
    assert not recorder.has(M, 3, S.START)


def test_stop_gives_up_on_held_handles_at_the_deadline(make_manager: MakeManager) -> None:
    manager, _recorder, first = serve(make_manager)
    handle = manager.get_handle(M)
    assert manager.stop(timeout=0.2) is False
    assert not first.unloaded.is_set()
    handle.release()


def test_stop_interrupts_a_retry_wait(make_manager: MakeManager) -> None:
    manager, recorder = make_manager(load_retry_interval_s=60.0)
    bad = loader(1, always_fail=True)
    aspire(manager, bad)
    assert bad.load_started.wait(WAIT_S)
    assert manager.stop(timeout=WAIT_S)
    assert recorder.last(M, 1).manager_state is S.END
    assert bad.load_attempts == 1


def test_state_changes_are_logged_with_structured_fields(
    make_manager: MakeManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="servingd.core.manager")
    serve(make_manager, version=3)
    records = [r for r in caplog.records if getattr(r, "SERVABLE_STATE", None) == "AVAILABLE"]
    assert len(records) == 1
    assert (records[0].__dict__["MODEL_NAME"], records[0].__dict__["MODEL_VERSION"]) == (M, "3")
