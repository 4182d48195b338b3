"""Whether the event loop has other work while no inference request is in flight.

The inline policy (inline_runs) must tell one client from many, and no count the server
keeps can: while runs are inline, grpc.aio hands the loop one call at a time, the calls
waiting in gRPC's core are invisible, and the in-flight count stays at 1-2 even at 64
clients. What does differ is how the loop thread spends the gaps between requests. After a
request ends and before the next one is admitted, one client's loop waits in epoll for that
client to send again; under load it is busy the whole gap (reading, parsing, writing other
calls). Measured on the 2-core bench box (MLP, gRPC, batch 1, batching off): the share of the
gap the loop thread spent on the CPU had a median of 0.57-0.66 at 1 client and 1.00 at 4, 16
and 64.

So each gap (the in-flight count at 0, until it rises again) gives a reading: the loop
thread's CPU time over the gap's wall time. Readings are averaged (weight `WEIGHT`), and the
loop is `loaded` while that average is at least `LOADED_SHARE`. While runs are handed off
under load the count seldom falls to 0, so the average holds until the load eases; an idle
spell reads near 0 and brings it down at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Weight of one gap's reading in the average: a few gaps decide, one odd gap does not.
WEIGHT = 1 / 8
# The average share at or above which the loop counts as loaded (1 client: ~0.6; 4+: 1.0).
LOADED_SHARE = 0.8


class LoopLoad:
    """Readings of the event loop's CPU share in the gaps between requests. Call both
    methods on the loop thread (a gap opened on one thread and closed on another is not
    read: CPU time is per thread). The clocks are the calling thread's CPU time and a
    monotonic wall clock, in seconds (tests pass their own)."""

    __slots__ = ("_cpu_time", "_gap_cpu", "_gap_thread", "_gap_wall", "_wall_time", "share")

    def __init__(
        self,
        cpu_time: Callable[[], float] = time.thread_time,
        wall_time: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.share = 0.0  # no reading yet: not loaded
        self._cpu_time = cpu_time
        self._wall_time = wall_time
        self._gap_thread = 0  # 0: no gap open
        self._gap_cpu = 0.0
        self._gap_wall = 0.0

    @property
    def loaded(self) -> bool:
        return self.share >= LOADED_SHARE

    def gap_opened(self) -> None:
        """The last request in flight has ended."""
        self._gap_thread = threading.get_ident()
        self._gap_cpu = self._cpu_time()
        self._gap_wall = self._wall_time()

    def gap_closed(self) -> None:
        """A request was admitted with none other in flight."""
        if self._gap_thread != threading.get_ident():
            self._gap_thread = 0
            return
        self._gap_thread = 0
        wall = self._wall_time() - self._gap_wall
        if wall <= 0:
            return
        reading = min(1.0, (self._cpu_time() - self._gap_cpu) / wall)
        self.share += WEIGHT * (reading - self.share)
