"""LoopLoad: a gap the loop spends busy reads as load, a gap spent waiting does not, and the
in-flight limiter opens a gap when its count falls to 0 and closes it when the count rises."""

from __future__ import annotations

import threading
import time

from servingd.apis.admission import AdmissionOptions, InFlightLimiter
from servingd.apis.loop_load import LOADED_SHARE, LoopLoad


def _busy(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _busy_gap(load: LoopLoad) -> None:
    load.gap_opened()
    _busy(0.002)
    load.gap_closed()


def _waiting_gap(load: LoopLoad) -> None:
    """The loop waited in epoll the whole gap: one client, or none."""
    load.gap_opened()
    time.sleep(0.005)
    load.gap_closed()


def test_busy_gaps_make_the_loop_loaded_and_waiting_gaps_unload_it() -> None:
    load = LoopLoad()
    assert not load.loaded
    for _ in range(20):
        _busy_gap(load)
    assert load.loaded
    for _ in range(3):
        _waiting_gap(load)
    assert not load.loaded


def test_one_odd_gap_does_not_decide() -> None:
    load = LoopLoad()
    load.share = 1.0
    _waiting_gap(load)
    assert load.loaded
    load.share = LOADED_SHARE - 0.1
    _busy_gap(load)
    assert not load.loaded


def test_a_gap_closed_on_another_thread_is_not_read() -> None:
    load = LoopLoad()
    load.share = 1.0
    load.gap_opened()
    time.sleep(0.005)
    closer = threading.Thread(target=load.gap_closed)  # its CPU time is not the opener's
    closer.start()
    closer.join()
    assert load.share == 1.0
    load.gap_closed()  # and the gap is gone: nothing to read
    assert load.share == 1.0


def test_the_limiter_reads_the_gaps_between_requests_in_flight() -> None:
    load = LoopLoad()
    limiter = InFlightLimiter(AdmissionOptions(), load)
    first = limiter.acquire("a")
    second = limiter.acquire("b")
    first()
    _busy(0.005)  # one still in flight: not a gap
    third = limiter.acquire("a")
    assert load.share == 0.0
    second()
    third()  # none in flight: the gap opens
    _busy(0.005)
    limiter.acquire("a")()
    assert load.share > 0.1
