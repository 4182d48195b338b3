"""lower_current_thread: the calling thread's nice value only, and only ever upwards."""

from __future__ import annotations

import os
import threading

import pytest

from servingd.core.thread_priority import lower_current_thread


def _in_new_thread(*nices: int) -> tuple[int, int]:
    """Applies `nices` in a fresh thread; (its nice value after, the caller's)."""
    seen: list[int] = []

    def work() -> None:
        for nice in nices:
            lower_current_thread(nice)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return seen[0], os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_only_the_calling_thread_is_lowered() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert before < 7  # the test runner's own priority must leave room to observe a change
    assert _in_new_thread(7) == (7, before)


def test_never_raises_priority_back() -> None:
    assert _in_new_thread(9, 4)[0] == 9
    assert _in_new_thread(9, 0)[0] == 9


def test_threads_started_by_a_lowered_thread_inherit_it() -> None:
    seen: list[int] = []

    def child() -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def parent() -> None:
        lower_current_thread(6)
        thread = threading.Thread(target=child)
        thread.start()
        thread.join()

    thread = threading.Thread(target=parent)
    thread.start()
    thread.join()
    assert seen == [6]


@pytest.mark.parametrize("nice", [-1, 20])
def test_out_of_range_is_refused(nice: int) -> None:
    with pytest.raises(ValueError, match=r"within \[0, 19\]"):
        lower_current_thread(nice)
