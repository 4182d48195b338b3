"""The S3 store under the polling source, against a real S3 API (moto's server on loopback).

Loaders are test doubles (the daemon tests load real models); clocks are injected, so
every verdict on settling comes from the rule, not from how fast the machine is.
"""

from __future__ import annotations

import filecmp
import itertools
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.unit.fakes import FakeLoader

from servingd.core.ids import ServableId
from servingd.core.loader import Loader
from servingd.core.metrics import REGISTRY
from servingd.core.source import AspiredVersion
from servingd.sources.polling import PollingSource, SourceModelConfig, backoff_s
from servingd.sources.router import StoreRouter
from servingd.sources.s3.options import S3Credentials, S3Options
from servingd.sources.s3.store import RECORD_NAME, S3Store
from servingd.sources.version_policy import Latest
from servingd.sources.version_store import LocalStore
from support.s3_server import MotoServer, upload_version

BUCKET = "models"
SETTLE_S = 10.0
POLL_S = 30.0


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with MotoServer() as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def hp2(testdata: Path) -> Path:
    return testdata / "saved_model_half_plus_two_cpu" / "00000123"


class Target:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[AspiredVersion]]] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, versions: Sequence[AspiredVersion]) -> None:
        with self.lock:
            self.calls.append((name, list(versions)))

    def sent(self) -> list[list[int]]:
        """Every list sent, less the empty ones before the first version was ready."""
        lists = [[v.id.version for v in vs] for _, vs in self.calls]
        while lists and not lists[0]:
            lists.pop(0)
        return lists

    def paths(self) -> list[str]:
        loaders = [v.loader for v in self.calls[-1][1]]
        return [str(loader.path) for loader in loaders if isinstance(loader, FakeLoader)]


class Clocks:
    """A monotonic clock the test moves, and a wall clock stopped at the real time of the
    test's start, so that every object uploaded during the test is recent to it (S3's
    LastModified has a resolution of one second: at most a second before that start)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall_ns = time.time_ns()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> int:
        return self.wall_ns

    def advance(self, seconds: float) -> None:
        self.now += seconds


def factory(servable_id: ServableId, path: str) -> Loader:
    return FakeLoader(servable_id, path=path)


def make_source(
    server: MotoServer,
    cache: Path,
    prefix: str,
    clocks: Clocks,
    *,
    bucket: str = BUCKET,
    credentials: S3Credentials | None = None,
) -> tuple[PollingSource, Target, S3Store]:
    store = S3Store(
        S3Options.from_settings(
            endpoint=server.endpoint,
            region="",
            path_style=None,
            ca_bundle="",
            poll_interval_s=POLL_S,
            settle_s=SETTLE_S,
            cache_dir=str(cache),
            credentials=credentials or S3Credentials(server.access_key, server.secret_key),
            environ={},
        )
    )
    source = PollingSource(
        [SourceModelConfig("hp2", f"s3://{bucket}/{prefix}", Latest())],
        factory,
        poll_wait_s=-1,
        clock=clocks.monotonic,
        wall_clock_ns=clocks.wall,
        store_for=StoreRouter(LocalStore(1, 1), lambda: store),
    )
    target = Target()
    source.set_aspired_versions_callback(target)
    return source, target, store


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def settle(source: PollingSource, clocks: Clocks) -> None:
    """Two polls a settle time apart, nothing uploaded in between."""
    source.poll_once()
    clocks.advance(SETTLE_S)
    source.poll_once()


# ------------------------------------------------------------------- fetch and verify


def test_published_version_is_fetched_whole_then_aspired(
    s3: MotoServer, hp2: Path, tmp_path: Path
) -> None:
    clocks = Clocks()
    upload_version(s3.client(), BUCKET, "fetch/hp2/1", hp2, manifest=True)
    source, target, _store = make_source(s3, tmp_path, "fetch/hp2", clocks)
    before = metric("servingd_s3_fetched_bytes_total", model_name="hp2")
    settle(source, clocks)
    assert target.sent() == [[1]]
    (path,) = target.paths()
    assert path == str(tmp_path / BUCKET / "fetch" / "hp2" / "1")
    same = filecmp.dircmp(hp2, path)
    assert not same.left_only and not same.diff_files
    assert (Path(path) / "SHA256SUMS").is_file() and (Path(path) / RECORD_NAME).is_file()
    assert sorted(os.listdir(Path(path).parent)) == ["1"]  # nothing temporary left
    size = sum(p.stat().st_size for p in hp2.rglob("*") if p.is_file())
    assert metric("servingd_s3_fetched_bytes_total", model_name="hp2") - before > size
    assert source.errors() == {}


def test_upload_in_progress_is_not_aspired_until_its_listing_settles(
    s3: MotoServer, hp2: Path, tmp_path: Path
) -> None:
    clocks = Clocks()
    client = s3.client()
    upload_version(client, BUCKET, "partial/hp2/1", hp2)
    source, target, _store = make_source(s3, tmp_path, "partial/hp2", clocks)
    settle(source, clocks)
    assert target.sent() == [[1]]

    files = sorted(p for p in hp2.rglob("*") if p.is_file())
    first, *rest = sorted(files, key=lambda p: p.name != "saved_model.pb")
    # Objects of version 2 arrive one by one, a few (fake) seconds apart.
    client.put_object(Bucket=BUCKET, Key="partial/hp2/2/saved_model.pb", Body=first.read_bytes())
    source.poll_once()
    for path in rest:
        clocks.advance(SETTLE_S * 0.6)
        key = f"partial/hp2/2/{path.relative_to(hp2).as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        source.poll_once()
        assert target.sent() == [[1]], "version 2 aspired while its upload went on"
    clocks.advance(SETTLE_S * 0.9)
    source.poll_once()
    assert target.sent() == [[1]]  # unchanged for less than the settle time
    clocks.advance(SETTLE_S * 0.1)
    source.poll_once()
    assert target.sent() == [[1], [2]]
    same = filecmp.dircmp(hp2, target.paths()[0])
    assert not same.left_only and not same.right_only[1:] and not same.diff_files


def test_corrupt_version_is_refused_and_the_previous_one_stays(
    s3: MotoServer, hp2: Path, tmp_path: Path
) -> None:
    clocks = Clocks()
    client = s3.client()
    upload_version(client, BUCKET, "corrupt/hp2/1", hp2, manifest=True)
    source, target, _store = make_source(s3, tmp_path, "corrupt/hp2", clocks)
    settle(source, clocks)
    errors_before = metric("servingd_s3_errors_total", model_name="hp2", kind="verify")
    data = "variables/variables.data-00000-of-00001"
    upload_version(client, BUCKET, "corrupt/hp2/2", hp2, manifest=True, corrupt=data)
    settle(source, clocks)
    assert target.sent() == [[1]]
    error = source.errors()["hp2"]
    for part in ("hp2", "version 2", "s3://models/corrupt/hp2/2", "SHA256SUMS", data):
        assert part in error
    assert source.status()["hp2"].state == "error"
    assert metric("servingd_s3_errors_total", model_name="hp2", kind="verify") > errors_before
    assert sorted(os.listdir(tmp_path / BUCKET / "corrupt" / "hp2")) == ["1"]
    clocks.advance(SETTLE_S)
    source.poll_once()  # not fetched again while it is unchanged
    assert metric("servingd_s3_errors_total", model_name="hp2", kind="verify") == (
        errors_before + 1
    )
    upload_version(client, BUCKET, "corrupt/hp2/2", hp2, manifest=True)  # republished, fixed
    settle(source, clocks)
    assert target.sent() == [[1], [2]]
    assert source.errors() == {}


# ------------------------------------------------------------------- the store going away


def test_store_down_keeps_what_is_aspired_and_recovers(
    hp2: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clocks = Clocks()
    with MotoServer() as server:
        server.client().create_bucket(Bucket=BUCKET)
        upload_version(server.client(), BUCKET, "hp2/1", hp2)
        source, target, _store = make_source(server, tmp_path, "hp2", clocks)
        settle(source, clocks)
        assert target.sent() == [[1]]
        port = server.port
    source.poll_once()  # the store is gone
    assert target.sent() == [[1]]
    error = source.errors()["hp2"]
    for part in ("hp2", f"bucket {BUCKET}", "unreachable", "stay loaded"):
        assert part in error
    assert source.status()["hp2"].state == "error"
    # The journal gets the model as a field (MODEL_NAME=hp2) with the warning.
    (record,) = [r for r in caplog.records if "cannot be listed" in r.getMessage()]
    assert record.levelname == "WARNING" and record.__dict__["MODEL_NAME"] == "hp2"
    with MotoServer(port) as server:  # back (empty: the publisher uploads again)
        server.client().create_bucket(Bucket=BUCKET)
        upload_version(server.client(), BUCKET, "hp2/1", hp2)
        fetched = metric("servingd_s3_fetched_bytes_total", model_name="hp2")
        settle(source, clocks)
        assert source.errors() == {}
        assert target.sent() == [[1]]  # the same version: nothing new sent, nothing fetched
        assert metric("servingd_s3_fetched_bytes_total", model_name="hp2") == fetched


def test_restart_with_the_store_down_serves_the_cache(hp2: Path, tmp_path: Path) -> None:
    clocks = Clocks()
    with MotoServer() as server:
        server.client().create_bucket(Bucket=BUCKET)
        upload_version(server.client(), BUCKET, "hp2/1", hp2)
        first, target, _store = make_source(server, tmp_path, "hp2", clocks)
        settle(first, clocks)
        assert target.sent() == [[1]]
        cached = target.paths()
    first.stop()
    restarted, target, _store = make_source(server, tmp_path, "hp2", Clocks())
    restarted.poll_once()
    assert target.sent() == [[1]]
    assert target.paths() == cached
    assert "unreachable" in restarted.errors()["hp2"]


def test_missing_bucket_names_the_model_and_the_bucket(s3: MotoServer, tmp_path: Path) -> None:
    source, target, _store = make_source(s3, tmp_path, "hp2", Clocks(), bucket="no-such-bucket")
    before = metric("servingd_s3_errors_total", model_name="hp2", kind="list")
    source.poll_once()
    assert target.sent() == []
    error = source.errors()["hp2"]
    assert "model hp2" in error and "bucket no-such-bucket does not exist" in error
    assert metric("servingd_s3_errors_total", model_name="hp2", kind="list") == before + 1


def test_wrong_credentials_name_the_model_and_the_bucket(tmp_path: Path) -> None:
    with MotoServer(auth=True) as server:
        server.client().create_bucket(Bucket=BUCKET)
        wrong = S3Credentials(server.access_key, "not-the-secret")
        source, target, _store = make_source(server, tmp_path, "hp2", Clocks(), credentials=wrong)
        source.poll_once()
        assert target.sent() == []
        error = source.errors()["hp2"]
        assert "model hp2" in error and f"access to bucket {BUCKET} was refused" in error
        assert "SignatureDoesNotMatch" in error


def test_closing_the_store_stops_a_download(s3: MotoServer, hp2: Path, tmp_path: Path) -> None:
    clocks = Clocks()
    upload_version(s3.client(), BUCKET, "closing/hp2/1", hp2)
    source, target, store = make_source(s3, tmp_path, "closing/hp2", clocks)
    store.close()  # the daemon is stopping
    settle(source, clocks)
    assert target.sent() == []
    assert "not fetched, stopping" in source.errors()["hp2"]
    assert not (tmp_path / BUCKET / "closing" / "hp2").exists() or not os.listdir(
        tmp_path / BUCKET / "closing" / "hp2"
    )


# ------------------------------------------------------------------- cache and schedule


def test_cached_versions_no_longer_aspired_are_pruned(
    s3: MotoServer, hp2: Path, tmp_path: Path
) -> None:
    clocks = Clocks()
    client = s3.client()
    source, target, _store = make_source(s3, tmp_path, "prune/hp2", clocks)
    for version in (1, 2, 3):
        upload_version(client, BUCKET, f"prune/hp2/{version}", hp2)
        settle(source, clocks)
    assert target.sent() == [[1], [2], [3]]
    # The one served before the latest stays (a rollback target when the latest fails).
    assert sorted(os.listdir(tmp_path / BUCKET / "prune" / "hp2")) == ["2", "3"]


def test_failed_polls_back_off_exponentially() -> None:
    assert backoff_s(30, 0) == 30
    assert [backoff_s(5, n) for n in (1, 2, 3, 4, 5, 6)] == [10, 20, 40, 80, 160, 300]
    assert backoff_s(600, 3) == 600  # never below the interval


def test_a_failing_model_is_polled_after_its_backoff_only(tmp_path: Path) -> None:
    """The poll thread's schedule, driven by the injected clock: no poll before it is due."""
    clocks = Clocks()
    dead = MotoServer()  # never started: connections are refused
    source, _target, store = make_source(dead, tmp_path, "hp2", clocks)
    polls: list[float] = []
    listing = store.list_versions

    def counted(model: str, base_path: str) -> Any:
        polls.append(clocks.now)
        return listing(model, base_path)

    store.list_versions = counted  # type: ignore[method-assign]
    source._poll_due()
    for _ in range(100):  # the worker runs in the background: wait for each poll to end
        deadline = time.monotonic() + 30
        while source._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        clocks.advance(5)
        source._poll_due()
    source.stop()
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert gaps[:3] == [60, 120, 240]  # 30 s * 2**n after the n-th failure in a row
