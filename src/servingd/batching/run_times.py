"""The run-time cache: how long each signature's last batched run took, per padded row.

The batch processor reads it to choose where a batch's TensorFlow ops run: a batch expected
to run within `SHORT_BATCH_RUN_S` executes them on the batch thread itself (the servable's
``in_caller_thread`` hint) instead of handing each step to TensorFlow's inter-op threads: for
a run that short the hand-offs cost more than the ops. Longer runs keep the inter-op pool
(independent branches of a big graph run in parallel there).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

from servingd.servables.servable import Servable

# Batched runs expected within this execute TensorFlow's ops on the batch thread. Bench box
# (2 vCPU, 1 client, batch timeout 0): half_plus_two p50 1.5-2.1 -> 1.2-1.5 ms, MLP
# 784-512-512-10 1.7-1.9 -> 1.4-1.75 ms; at 64 clients even. The wide MLP's runs (5 ms and
# up) stay on the pool.
SHORT_BATCH_RUN_S = 0.002


class BatchRunTimes:
    """Seconds per padded row of each signature's last batched run, per servable object
    (a reloaded version starts afresh; a record goes with its servable), measured with
    `clock` (monotonic seconds; tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self._by_servable: weakref.WeakKeyDictionary[Servable, dict[str, float]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # WeakKeyDictionary is not safe across threads

    def is_short(self, servable: Servable, signature_name: str, rows: int) -> bool:
        """Whether a run of `rows` padded rows is expected within SHORT_BATCH_RUN_S; False
        for a signature without a record (its first run takes the pool)."""
        with self._lock:
            per_row = self._by_servable.get(servable, {}).get(signature_name)
        return per_row is not None and per_row * rows <= SHORT_BATCH_RUN_S

    def record(self, servable: Servable, signature_name: str, seconds: float, rows: int) -> None:
        with self._lock:
            self._by_servable.setdefault(servable, {})[signature_name] = seconds / rows
