"""A budget of log lines per interval for what clients can cause, so that a stream of bad
requests cannot fill the disk: the first `burst` in each interval are logged, the rest are
counted, and the next line logged after the interval says how many were left out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 60.0
DEFAULT_BURST = 10


class LogBudget:
    """Thread-safe. `clock` returns seconds (monotonic); tests pass their own."""

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        burst: int = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = clock()
        self._logged = 0
        self._left_out = 0

    def take(self) -> tuple[bool, int]:
        """(whether to log this one, how many were left out before it and not yet told)."""
        with self._lock:
            now = self._clock()
            if now - self._window_start >= self.interval_s:
                self._window_start = now
                self._logged = 0
            if self._logged >= self.burst:
                self._left_out += 1
                return False, 0
            self._logged += 1
            left_out, self._left_out = self._left_out, 0
            return True, left_out

    def summary(self, left_out: int) -> str:
        """The note for `left_out` lines left out ("" for none)."""
        if not left_out:
            return ""
        return (
            f" [{left_out} similar lines left out: at most {self.burst} per {self.interval_s:g} s]"
        )
