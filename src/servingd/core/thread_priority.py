"""Lowering a thread's CPU priority, so that model compute yields the CPU to serving.

On Linux the nice value belongs to each thread, and a new thread starts with its creator's.
servingd lowers it (``compute_thread_nice``) on the threads that do model work: model
loads (TensorFlow creates its compute thread pools during the first Session's creation,
so those inherit it), the unbatched-run workers and the batch threads. The event loop and
gRPC's threads keep theirs. When every core is busy, the front end then gets the CPU first:
it admits requests while TensorFlow runs, so batches fill up instead of requests waiting in
gRPC's core. Raising a nice value needs no privilege; lowering one does, so this only ever
raises it.
"""

from __future__ import annotations

import os
import threading

MAX_NICE = 19


def lower_current_thread(nice: int) -> None:
    """Raise the calling thread's nice value to `nice` (never lowers it; 0: no change)."""
    # The configuration's check (with file:line) is config/schema.py's. This guard stays:
    # batching and servables pass their own parameters here, not only checked settings,
    # and the kernel would quietly clamp 20 to 19 and ignore a negative value.
    if not 0 <= nice <= MAX_NICE:
        raise ValueError(f"a nice value must be within [0, {MAX_NICE}], got {nice}")
    if nice == 0:
        return
    tid = threading.get_native_id()
    if os.getpriority(os.PRIO_PROCESS, tid) < nice:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
