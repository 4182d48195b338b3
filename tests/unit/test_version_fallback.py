"""Falling back to the newest version that loads (FileSystemSource + manager, `latest`)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from servingd.core.errors import NotFound
from servingd.core.events import EventBus
from servingd.core.ids import ServableId
from servingd.core.loader import Loader
from servingd.core.manager import AspiredVersionsManager, ManagerOptions
from servingd.core.monitor import ServableStateMonitor
from servingd.core.states import ManagerState, ServableState
from servingd.sources.filesystem import FileSystemSource, SourceModelConfig
from servingd.sources.metrics import VERSION_FALLBACKS
from servingd.sources.version_policy import Latest, ServableVersionPolicy, Specific
from tests.unit.fakes import WAIT_S, FakeLoader
from tests.unit.test_filesystem_source import make_version

S = ManagerState
BROKEN = "BROKEN"  # a version dir holding this file fails to load, as a corrupt SavedModel


def make_broken(base: Path, version: int) -> Path:
    path = make_version(base, version)
    (path / BROKEN).write_bytes(b"")
    return path


@dataclass
class Box:
    manager: AspiredVersionsManager
    monitor: ServableStateMonitor
    source: FileSystemSource
    loads: list[FakeLoader]

    def state(self, version: int) -> ServableState | None:
        return self.monitor.get_state(ServableId("m", version))

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        # Polled: a fallback that only re-aspires a loaded version publishes no event.
        deadline = time.monotonic() + WAIT_S
        while not predicate():
            assert time.monotonic() < deadline, f"{what}: {self.monitor.get_all()}"
            time.sleep(0.01)

    def wait_state(self, version: int, state: ManagerState) -> None:
        def reached() -> bool:
            current = self.state(version)
            return current is not None and current.manager_state is state

        self.wait(reached, f"v{version} never {state.value}")

    def attempts(self, version: int) -> int:
        return sum(ld.load_attempts for ld in self.loads if ld.id.version == version)

    def settled(self) -> bool:
        return not self.source.fallback_pending("m") and self.monitor.is_settled("m")


def factory(loads: list[FakeLoader]) -> Callable[[ServableId, str], Loader]:
    def make(servable_id: ServableId, path: str) -> Loader:
        broken = os.path.exists(os.path.join(path, BROKEN))
        error = NotFound(f"Loading servable: {servable_id} failed: no MetaGraphDef for 'serve'")
        loader = FakeLoader(servable_id, path=path, always_fail=broken, error=error)
        loads.append(loader)
        return loader

    return make


@pytest.fixture
def make_box(tmp_path: Path) -> Iterator[Callable[..., Box]]:
    boxes: list[Box] = []

    def make(policy: ServableVersionPolicy | None = None, fall_back: bool = True) -> Box:
        loads: list[FakeLoader] = []
        bus: EventBus[ServableState] = EventBus()
        manager = AspiredVersionsManager(
            bus, ManagerOptions(manage_interval_s=0.02, max_num_load_retries=5)
        )
        source = FileSystemSource(
            [SourceModelConfig("m", str(tmp_path), policy or Latest())],
            factory(loads),
            poll_wait_s=-1,
            settle_s=0,
            fall_back=fall_back,
        )
        bus.subscribe(source.on_servable_state)  # before the monitor, as the daemon does
        monitor = ServableStateMonitor(bus)
        source.set_aspired_versions_callback(manager.set_aspired_versions)
        manager.start()
        source.start()
        box = Box(manager, monitor, source, loads)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.source.stop()
        assert box.manager.stop(WAIT_S)
        box.monitor.close()


def test_corrupt_newest_version_at_start_serves_the_one_below(
    make_box: Callable[..., Box], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="servingd.sources")
    make_version(tmp_path, 123)
    make_broken(tmp_path, 124)
    before = VERSION_FALLBACKS.labels("m")._value.get()
    box = make_box()
    box.source.poll_once()
    box.wait_state(123, S.AVAILABLE)
    failed = box.state(124)
    assert failed is not None and failed.manager_state is S.END
    assert "no MetaGraphDef" in str(failed.error)
    assert box.attempts(124) == 1  # NOT_FOUND: retrying cannot fix it
    with box.manager.get_handle("m") as handle:
        assert handle.id.version == 123
    assert VERSION_FALLBACKS.labels("m")._value.get() == before + 1
    [line] = [r for r in caplog.records if "serving version 123 instead" in r.getMessage()]
    assert (line.levelno, line.__dict__["MODEL_NAME"], line.__dict__["MODEL_VERSION"]) == (
        logging.WARNING,
        "m",
        "124",
    )
    assert "version 124 failed to load" in line.getMessage()
    # Polls do not try 124 again while its files stay the same.
    for _ in range(3):
        box.source.poll_once()
    box.wait(box.settled, "not settled")
    assert box.attempts(124) == 1
    assert box.state(124).manager_state is S.END  # type: ignore[union-attr]


def test_corrupt_new_version_at_run_time_keeps_the_old_one_serving(
    make_box: Callable[..., Box], tmp_path: Path
) -> None:
    make_version(tmp_path, 1)
    box = make_box()
    box.source.poll_once()
    box.wait_state(1, S.AVAILABLE)
    make_broken(tmp_path, 2)
    box.source.poll_once()
    box.wait_state(2, S.END)
    box.wait(box.settled, "not settled")
    current = box.state(1)
    assert current is not None and current.manager_state is S.AVAILABLE
    assert box.manager.list_available_versions("m") == [1]
    assert box.attempts(1) == 1  # version 1 was never unloaded and loaded again


def test_failed_version_is_tried_again_when_its_directory_changes(
    make_box: Callable[..., Box], tmp_path: Path
) -> None:
    make_version(tmp_path, 1)
    broken = make_broken(tmp_path, 2)
    box = make_box()
    box.source.poll_once()
    box.wait_state(1, S.AVAILABLE)
    box.wait_state(2, S.END)
    (broken / BROKEN).unlink()  # the admin fixes version 2 in place
    os.utime(broken, (1_000_000, 1_000_000))
    box.source.poll_once()
    box.wait_state(2, S.AVAILABLE)
    box.wait_state(1, S.END)
    assert box.attempts(2) == 2


def test_falls_back_down_to_num_versions(make_box: Callable[..., Box], tmp_path: Path) -> None:
    for version in (1, 2, 3):
        make_version(tmp_path, version)
    make_broken(tmp_path, 4)
    box = make_box(Latest(num_versions=2))
    box.source.poll_once()
    box.wait(lambda: box.manager.list_available_versions("m") == [2, 3], "not serving 2 and 3")
    assert box.state(1) is None  # never needed


def test_a_chain_of_failures_falls_back_to_the_newest_that_loads(
    make_box: Callable[..., Box], tmp_path: Path
) -> None:
    make_version(tmp_path, 1)
    make_broken(tmp_path, 2)
    make_broken(tmp_path, 3)
    box = make_box()
    box.source.poll_once()
    box.wait_state(1, S.AVAILABLE)
    assert [box.state(v).manager_state for v in (2, 3)] == [S.END, S.END]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("policy", "fall_back"), [(Latest(), False), (Specific(frozenset({2})), True)]
)
def test_strict_mode_and_specific_versions_do_not_fall_back(
    make_box: Callable[..., Box],
    tmp_path: Path,
    policy: ServableVersionPolicy,
    fall_back: bool,
) -> None:
    make_version(tmp_path, 1)
    make_broken(tmp_path, 2)
    box = make_box(policy, fall_back=fall_back)
    box.source.poll_once()
    box.wait_state(2, S.END)
    box.wait(box.settled, "not settled")
    assert box.state(1) is None
    assert box.manager.list_available_versions("m") == []
