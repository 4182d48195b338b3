"""FileSystemSource: polling real temp directories into aspired-version lists."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from servingd.core.errors import Unknown
from servingd.core.ids import ServableId
from servingd.core.loader import Loader
from servingd.core.source import AspiredVersion
from servingd.sources import polling
from servingd.sources.filesystem import FileSystemSource, SourceModelConfig
from servingd.sources.version_policy import All, Latest, ServableVersionPolicy, Specific
from tests.unit.fakes import WAIT_S, FakeLoader

OLD = time.time() - 3600  # an mtime long past any settle time


def make_version(
    base: Path, version: int | str, *, saved_model: bool = True, old: bool = True
) -> Path:
    """A version dir with a saved model and a variables file; mtimes an hour old if `old`."""
    path = base / str(version)
    (path / "variables").mkdir(parents=True)
    (path / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 64)
    if saved_model:
        (path / "saved_model.pb").write_bytes(b"graph")
    if old:
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.utime(os.path.join(root, name), (OLD, OLD))
        os.utime(path, (OLD, OLD))
    return path


class Target:
    """The callback side: records every aspired list the source sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[AspiredVersion]]] = []
        self._cond = threading.Condition()

    def __call__(self, name: str, versions: Sequence[AspiredVersion]) -> None:
        with self._cond:
            self.calls.append((name, list(versions)))
            self._cond.notify_all()

    def sent(self, name: str | None = None) -> list[tuple[str, list[int]]]:
        with self._cond:
            return [
                (n, [v.id.version for v in vs]) for n, vs in self.calls if name is None or n == name
            ]

    def last(self, name: str) -> list[AspiredVersion]:
        with self._cond:
            return next(vs for n, vs in reversed(self.calls) if n == name)

    def wait_for(self, name: str, versions: list[int]) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: (name, versions) in self.sent(name), WAIT_S)
        assert ok, f"{name} never sent {versions}: {self.sent()}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def factory(servable_id: ServableId, path: str) -> Loader:
    return FakeLoader(servable_id, path=path)


@pytest.fixture
def sources() -> Iterator[list[FileSystemSource]]:
    made: list[FileSystemSource] = []
    yield made
    for source in made:
        source.stop()


def model(name: str, base: Path, policy: ServableVersionPolicy | None = None) -> SourceModelConfig:
    return SourceModelConfig(name, str(base), policy or Latest())


class MakeSource(Protocol):
    def __call__(
        self,
        *models: SourceModelConfig,
        poll_wait_s: float = ...,
        settle_s: float = ...,
        clock: Callable[[], float] | None = ...,
        start: bool = ...,
    ) -> tuple[FileSystemSource, Target]: ...


@pytest.fixture
def make_source(sources: list[FileSystemSource]) -> Iterator[MakeSource]:
    """Started sources (poll wait < 0 and a fake clock unless told), stopped at teardown."""

    def make(
        *models: SourceModelConfig,
        poll_wait_s: float = -1,
        settle_s: float = 60.0,
        clock: Callable[[], float] | None = None,
        start: bool = True,
    ) -> tuple[FileSystemSource, Target]:
        target = Target()
        source = FileSystemSource(
            models, factory, poll_wait_s=poll_wait_s, settle_s=settle_s, clock=clock or FakeClock()
        )
        source.set_aspired_versions_callback(target)
        sources.append(source)
        if start:
            source.start()
        return source, target

    yield make


# ------------------------------------------------------------------- the aspired lists


def test_start_sends_the_initial_lists_synchronously(
    tmp_path: Path, make_source: MakeSource
) -> None:
    for v in (1, 2):
        make_version(tmp_path / "a", v)
        make_version(tmp_path / "b", v)
    _source, target = make_source(
        model("a", tmp_path / "a"), model("b", tmp_path / "b", All()), poll_wait_s=0
    )
    assert sorted(target.sent()) == [("a", [2]), ("b", [1, 2])]
    aspired = target.last("a")[0]
    assert aspired.id == ServableId("a", 2)
    assert isinstance(aspired.loader, FakeLoader)
    assert aspired.loader.path == str(tmp_path / "a" / "2")


def test_lists_are_resent_only_when_they_change(tmp_path: Path, make_source: MakeSource) -> None:
    make_version(tmp_path, 1)
    source, target = make_source(model("m", tmp_path, All()))
    assert target.sent() == []  # poll wait < 0: start() does not poll
    source.poll_once()
    source.poll_once()
    assert target.sent() == [("m", [1])]
    first_loader = target.last("m")[0].loader
    make_version(tmp_path, 2)
    source.poll_once()
    assert target.sent() == [("m", [1]), ("m", [1, 2])]
    assert target.last("m")[0].loader is first_loader  # a repeat keeps its loader


def test_removed_version_dir_stops_being_aspired(tmp_path: Path, make_source: MakeSource) -> None:
    for v in (1, 2):
        make_version(tmp_path, v)
    source, target = make_source(model("m", tmp_path))
    source.poll_once()
    shutil.rmtree(tmp_path / "2")
    source.poll_once()
    assert target.sent() == [("m", [2]), ("m", [1])]
    shutil.rmtree(tmp_path / "1")
    source.poll_once()
    assert target.sent()[-1] == ("m", [])


def test_version_readded_comes_with_a_new_loader(tmp_path: Path, make_source: MakeSource) -> None:
    make_version(tmp_path, 1)
    source, target = make_source(model("m", tmp_path))
    source.poll_once()
    before = target.last("m")[0].loader
    shutil.move(tmp_path / "1", tmp_path / ".trash")
    source.poll_once()
    shutil.move(tmp_path / ".trash", tmp_path / "1")
    source.poll_once()
    assert target.sent() == [("m", [1]), ("m", []), ("m", [1])]
    assert target.last("m")[0].loader is not before


def test_specific_policy_serves_named_versions(tmp_path: Path, make_source: MakeSource) -> None:
    for v in (1, 2, 3):
        make_version(tmp_path, v)
    source, target = make_source(model("m", tmp_path, Specific(frozenset({1, 3}))))
    source.poll_once()
    assert target.sent() == [("m", [1, 3])]


def test_loader_factory_errors_are_sent_as_errors(tmp_path: Path) -> None:
    make_version(tmp_path, 4)

    def broken(servable_id: ServableId, path: str) -> Loader:
        raise ValueError("unknown platform")

    target = Target()
    source = FileSystemSource([model("m", tmp_path)], broken, poll_wait_s=-1)
    source.set_aspired_versions_callback(target)
    source.poll_once()
    (aspired,) = target.last("m")
    assert aspired.loader is None
    assert isinstance(aspired.error, Unknown)
    for part in ("m", "version 4", str(tmp_path / "4"), "unknown platform"):
        assert part in str(aspired.error)


def test_a_failing_callback_is_retried_on_the_next_poll(tmp_path: Path) -> None:
    make_version(tmp_path, 1)
    target = Target()
    failures = [RuntimeError("manager busy")]

    def callback(name: str, versions: Sequence[AspiredVersion]) -> None:
        if failures:
            raise failures.pop()
        target(name, versions)

    source = FileSystemSource([model("m", tmp_path)], factory, poll_wait_s=-1)
    source.set_aspired_versions_callback(callback)
    source.poll_once()
    assert target.sent() == []
    source.poll_once()
    assert target.sent() == [("m", [1])]


# ------------------------------------------------------------------- half-written versions


def test_dir_without_saved_model_is_never_aspired(tmp_path: Path, make_source: MakeSource) -> None:
    clock = FakeClock()
    make_version(tmp_path, 1)
    make_version(tmp_path, 2, saved_model=False)
    source, target = make_source(model("m", tmp_path), clock=clock)
    source.poll_once()
    clock.now += 3600
    source.poll_once()
    assert target.sent() == [("m", [1])]


def test_growing_version_is_aspired_only_once_stable(
    tmp_path: Path, make_source: MakeSource
) -> None:
    clock = FakeClock()
    make_version(tmp_path, 1)
    source, target = make_source(model("m", tmp_path), clock=clock, settle_s=60.0)
    source.poll_once()
    assert target.sent() == [("m", [1])]

    new = make_version(tmp_path, 2, old=False)  # being written now
    data = new / "variables" / "variables.data-00000-of-00001"
    source.poll_once()
    clock.now += 40
    with data.open("ab") as f:
        f.write(b"more bytes")  # still growing: the settle time starts again
    source.poll_once()
    clock.now += 40  # 80 s since first seen, 40 s since the last change
    source.poll_once()
    assert target.sent() == [("m", [1])]
    clock.now += 20  # 60 s unchanged
    source.poll_once()
    assert target.sent() == [("m", [1]), ("m", [2])]
    # Once ready, not fingerprinted again: a later touch does not un-aspire it.
    data.write_bytes(b"rewritten")
    source.poll_once()
    assert target.sent()[-1] == ("m", [2])


def test_settling_dir_that_gets_its_saved_model_late(
    tmp_path: Path, make_source: MakeSource
) -> None:
    clock = FakeClock()
    source, target = make_source(model("m", tmp_path), clock=clock)
    path = make_version(tmp_path, 1, saved_model=False, old=False)
    source.poll_once()
    clock.now += 100
    (path / "saved_model.pb").write_bytes(b"graph")  # written last, like an exporter does
    source.poll_once()
    assert target.sent() == [("m", [])]
    clock.now += 60
    source.poll_once()
    assert target.sent() == [("m", []), ("m", [1])]


def test_settle_zero_aspires_at_once(tmp_path: Path, make_source: MakeSource) -> None:
    make_version(tmp_path, 1, old=False)
    source, target = make_source(model("m", tmp_path), settle_s=0)
    source.poll_once()
    assert target.sent() == [("m", [1])]


def test_poll_thread_settles_a_new_version_by_itself(
    tmp_path: Path, make_source: MakeSource
) -> None:
    make_version(tmp_path, 1)
    _, target = make_source(
        model("m", tmp_path), poll_wait_s=0.02, settle_s=0.1, clock=time.monotonic
    )
    make_version(tmp_path, 2, old=False)
    target.wait_for("m", [2])
    assert target.sent() == [("m", [1]), ("m", [2])]


# ------------------------------------------------------------------- base path trouble


def test_missing_base_path_is_reported_once_and_recovers(
    tmp_path: Path, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="servingd.sources")
    base = tmp_path / "models" / "m"
    source, target = make_source(model("m", base))
    source.poll_once()
    source.poll_once()
    assert target.sent() == []
    (message,) = source.errors().values()
    assert "m" in message and str(base) in message and "does not exist" in message
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and str(base) in r.getMessage()
    ]
    assert len(warnings) == 1
    make_version(base, 1)
    source.poll_once()
    assert source.errors() == {}
    assert target.sent() == [("m", [1])]
    assert "readable again" in caplog.text


def test_base_path_vanishing_keeps_what_was_aspired(
    tmp_path: Path, make_source: MakeSource
) -> None:
    base = tmp_path / "m"
    make_version(base, 1)
    source, target = make_source(model("m", base))
    source.poll_once()
    shutil.move(base, tmp_path / "m.offline")  # e.g. an unmounted share
    source.poll_once()
    assert target.sent() == [("m", [1])]
    assert "m" in source.errors()


def test_unreadable_base_path_is_reported(tmp_path: Path, make_source: MakeSource) -> None:
    base = tmp_path / "file-not-dir"
    base.write_text("oops")
    source, _ = make_source(model("m", base))
    source.poll_once()
    assert "is not a directory" in source.errors()["m"]


# ------------------------------------------------------------------- poll wait


def test_poll_wait_zero_polls_exactly_once(tmp_path: Path, make_source: MakeSource) -> None:
    make_version(tmp_path, 1)
    source, target = make_source(model("m", tmp_path), poll_wait_s=0)
    make_version(tmp_path, 2)
    time.sleep(0.1)
    assert target.sent() == [("m", [1])]
    assert source._thread is None


def test_poll_wait_zero_waits_for_a_version_still_being_written(
    tmp_path: Path, make_source: MakeSource
) -> None:
    make_version(tmp_path, 1)
    make_version(tmp_path, 2, old=False)  # written just before the only poll
    source, target = make_source(
        model("m", tmp_path), poll_wait_s=0, settle_s=0.2, clock=time.monotonic
    )
    assert target.sent()[0] == ("m", [1])
    target.wait_for("m", [2])  # polled alone until it settled, then aspired
    assert source._thread is not None
    source._thread.join(WAIT_S)
    assert not source._thread.is_alive()  # and then no more polls: poll wait 0
    assert not source.awaiting_settle("m")
    make_version(tmp_path, 3)
    time.sleep(0.1)
    assert target.sent()[-1] == ("m", [2])


def test_poll_wait_zero_gives_up_on_a_version_that_never_settles(
    tmp_path: Path,
    make_source: MakeSource,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(polling, "SINGLE_POLL_SETTLE_LIMIT_S", 0.2)
    make_version(tmp_path, 1, old=False)
    source, target = make_source(
        model("m", tmp_path), poll_wait_s=0, settle_s=60.0, clock=time.monotonic
    )
    assert source._thread is not None
    source._thread.join(WAIT_S)
    assert not source._thread.is_alive()
    assert all(versions == [] for _, versions in target.sent())
    assert "was still being written 0 s after the only poll" in caplog.text
    assert not source.awaiting_settle("m")  # the daemon's READY stops waiting for it


def test_poll_wait_zero_says_which_models_wait_for_a_version(
    tmp_path: Path, make_source: MakeSource
) -> None:
    make_version(tmp_path / "a", 1, old=False)
    make_version(tmp_path / "b", 1)
    source, _ = make_source(
        model("a", tmp_path / "a"),
        model("b", tmp_path / "b"),
        poll_wait_s=0,
        settle_s=60.0,
        clock=time.monotonic,
    )
    assert source.awaiting_settle("a")
    assert not source.awaiting_settle("b")
    assert not source.awaiting_settle("unknown")


def test_poll_wait_zero_reload_waits_for_a_new_model_being_written(
    tmp_path: Path, make_source: MakeSource
) -> None:
    make_version(tmp_path / "a", 1)
    source, target = make_source(
        model("a", tmp_path / "a"), poll_wait_s=0, settle_s=0.2, clock=time.monotonic
    )
    assert source._thread is None  # nothing was settling
    make_version(tmp_path / "b", 1, old=False)
    source.update_config([model("a", tmp_path / "a"), model("b", tmp_path / "b")])
    target.wait_for("b", [1])


def test_poll_wait_negative_never_polls(tmp_path: Path, make_source: MakeSource) -> None:
    make_version(tmp_path, 1)
    source, target = make_source(model("m", tmp_path), poll_wait_s=-1)
    time.sleep(0.05)
    assert target.sent() == []
    assert source._thread is None
    source.poll_once()
    assert target.sent() == [("m", [1])]


def test_poll_thread_picks_up_changes(tmp_path: Path, make_source: MakeSource) -> None:
    make_version(tmp_path, 1)
    source, target = make_source(model("m", tmp_path), poll_wait_s=0.01)
    make_version(tmp_path, 2)
    target.wait_for("m", [2])
    shutil.rmtree(tmp_path / "2")
    with target._cond:
        assert target._cond.wait_for(lambda: target.sent()[-1] == ("m", [1]), WAIT_S)
    source.stop()
    assert source._thread is not None and not source._thread.is_alive()


# ------------------------------------------------------------------- config reload


def test_update_config_adds_removes_and_changes_models(
    tmp_path: Path, make_source: MakeSource
) -> None:
    for name in ("a", "b", "b2", "c"):
        make_version(tmp_path / name, 1)
        make_version(tmp_path / name, 2)
    source, target = make_source(
        model("a", tmp_path / "a"), model("b", tmp_path / "b"), poll_wait_s=0
    )
    assert sorted(target.sent()) == [("a", [2]), ("b", [2])]
    old_b_loader = target.last("b")[0].loader
    shutil.rmtree(tmp_path / "b2" / "2")

    source.update_config(
        [model("b", tmp_path / "b2", All()), model("c", tmp_path / "c", Latest(2))]
    )
    assert target.sent("a") == [("a", [2]), ("a", [])]
    assert target.sent("b") == [("b", [2]), ("b", [1])]
    assert target.sent("c") == [("c", [1, 2])]
    (b1,) = target.last("b")
    assert isinstance(b1.loader, FakeLoader) and b1.loader.path == str(tmp_path / "b2" / "1")
    assert b1.loader is not old_b_loader


def test_update_config_resends_unchanged_models(tmp_path: Path, make_source: MakeSource) -> None:
    make_version(tmp_path, 1)
    source, target = make_source(model("m", tmp_path), poll_wait_s=0)
    loader_before = target.last("m")[0].loader
    source.update_config([model("m", tmp_path)])
    assert target.sent() == [("m", [1]), ("m", [1])]
    assert target.last("m")[0].loader is loader_before


def test_update_config_policy_change(tmp_path: Path, make_source: MakeSource) -> None:
    for v in (1, 2, 3):
        make_version(tmp_path, v)
    source, target = make_source(model("m", tmp_path), poll_wait_s=0)
    source.update_config([model("m", tmp_path, Specific(frozenset({1, 2})))])
    assert target.sent() == [("m", [3]), ("m", [1, 2])]


def test_update_config_without_polling_waits_for_poll_once(
    tmp_path: Path, make_source: MakeSource
) -> None:
    make_version(tmp_path / "a", 1)
    make_version(tmp_path / "b", 1)
    source, target = make_source(model("a", tmp_path / "a"), poll_wait_s=-1)
    source.poll_once()
    source.update_config([model("b", tmp_path / "b")])
    assert target.sent() == [("a", [1]), ("a", [])]  # removal is sent at once
    source.poll_once()
    assert target.sent()[-1] == ("b", [1])
