"""LoopLoad: a gap the loop spends busy reads as load, a gap spent waiting does not, and the
in-flight limiter opens a gap when its count falls to 0 and closes it when the count rises."""

from __future__ import annotations

import threading

from servingd.apis.admission import AdmissionOptions, InFlightLimiter
from servingd.apis.loop_load import LOADED_SHARE, WEIGHT, LoopLoad


class Clocks:
    """The loop thread's CPU time and the wall clock, moved by the test, not the machine."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0

    def busy(self, seconds: float) -> None:
        """The loop ran on the CPU for `seconds`."""
        self.cpu += seconds
        self.wall += seconds

    def waited(self, seconds: float) -> None:
        """The loop waited in epoll for `seconds`."""
        self.wall += seconds

    def load(self) -> LoopLoad:
        return LoopLoad(cpu_time=lambda: self.cpu, wall_time=lambda: self.wall)


def _gap(load: LoopLoad, clocks: Clocks, busy: float, waited: float) -> None:
    load.gap_opened()
    clocks.busy(busy)
    clocks.waited(waited)
    load.gap_closed()


def test_busy_gaps_make_the_loop_loaded_and_waiting_gaps_unload_it() -> None:
    clocks = Clocks()
    load = clocks.load()
    assert not load.loaded
    for _ in range(20):
        _gap(load, clocks, busy=0.002, waited=0.0)
    assert load.loaded and load.share > 0.9
    for _ in range(3):
        _gap(load, clocks, busy=0.0, waited=0.005)
    assert not load.loaded


def test_one_client_reads_as_unloaded() -> None:
    """At one client the loop is on the CPU for about 0.6 of each gap (bench box)."""
    clocks = Clocks()
    load = clocks.load()
    for _ in range(50):
        _gap(load, clocks, busy=0.0006, waited=0.0004)
    assert abs(load.share - 0.6) < 0.01 and not load.loaded


def test_one_odd_gap_does_not_decide() -> None:
    clocks = Clocks()
    load = clocks.load()
    load.share = 1.0
    _gap(load, clocks, busy=0.0, waited=0.005)
    assert load.loaded
    load.share = LOADED_SHARE - 0.1
    _gap(load, clocks, busy=0.002, waited=0.0)
    assert not load.loaded


def test_a_gap_without_wall_time_is_not_read() -> None:
    clocks = Clocks()
    load = clocks.load()
    load.share = 0.5
    _gap(load, clocks, busy=0.0, waited=0.0)
    assert load.share == 0.5


def test_a_gap_closed_on_another_thread_is_not_read() -> None:
    clocks = Clocks()
    load = clocks.load()
    load.share = 1.0
    load.gap_opened()
    clocks.waited(0.005)
    closer = threading.Thread(target=load.gap_closed)  # its CPU time is not the opener's
    closer.start()
    closer.join()
    assert load.share == 1.0
    load.gap_closed()  # and the gap is gone: nothing to read
    assert load.share == 1.0


def test_the_limiter_reads_the_gaps_between_requests_in_flight() -> None:
    clocks = Clocks()
    load = clocks.load()
    limiter = InFlightLimiter(AdmissionOptions(), load)
    first = limiter.acquire("a")
    second = limiter.acquire("b")
    first()
    clocks.busy(0.005)  # one still in flight: not a gap
    third = limiter.acquire("a")
    assert load.share == 0.0
    second()
    third()  # none in flight: the gap opens
    clocks.busy(0.005)
    limiter.acquire("a")()  # and closes: one reading of 1.0
    assert load.share == WEIGHT
