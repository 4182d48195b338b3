"""Which unbatched Predict runs may run on the event-loop thread instead of a worker thread.

Handing a run to a worker thread and its result back to the loop costs two thread
wake-ups. On small virtual machines a wake-up that crosses threads is expensive (measured on
the 2-core bench box: ~190 us per executor round trip, and p50 at 1 client 3.85 ms with the
hand-off against 1.52 ms inline for the MLP): for a model that runs in a millisecond the
hand-off costs more than the model. TF Serving has no hand-off at all (the gRPC thread runs
the session).

A run may go inline when its signature has a track record of being fast: at least
`min_runs` runs measured, and the expected time of this run (the signature's recent time per
input element, times this request's elements) at most `max_s`. Per element, because a big
request to a fast model is a slow run; the estimate errs high for small requests (the fixed
cost of a call is charged per element), which only sends more of them to a worker. While a
run is inline the loop serves nobody else, so `max_s` bounds that stall; 0 turns inlining
off.

The estimate must not let load decide for the model. Measured under 64 clients on the
2-core box, the old moving average (every run, weight 0.2) flapped: one pre-empted inline
run pushed it past the limit, the runs then sent to 32 worker threads at once each took many
times the model's time, and that kept the estimate high while the load lasted (24-100 % of
runs inline per 3 s window). So:

- A run that took less than the estimate sets it (the model can do that; contention only
  adds time). A run that took longer raises it by a tenth of the gap, and only if it ran
  alone: inline, or on a worker with no other worker run overlapping it. A slower run that
  shared the workers says nothing about the model. A model that really slows down (every
  run alone is slow) moves to the workers after a few runs.
- A signature sent to the workers for its estimate is probed: every `PROBE_EVERY`-th such
  request runs inline anyway, to measure it alone, if its expected time is at most
  `PROBE_LIMIT` times the limit (a model a little over it: a short stall, once in a while),
  or `UNMEASURED_PROBE_LIMIT` times it while no run of the signature has been measured alone
  (its record comes only from runs that shared the workers, as when a fresh model starts
  under load).

Under load, a run on the loop holds up every other request, and on a worker it overlaps
them: on the 2-core box, MLP batch-1 gRPC with batching off served 10-25 % more at
16 clients and up to 19 % more at 64 with no inline runs, and 20-30 % less at 1 client. So
a run that could go inline goes to a worker while the loop is loaded (loop_load: the loop
stays busy in the gaps between requests), and stays inline at one client.

Except a run expected within `STAY_INLINE_S`: on a worker it frees the loop for less than the
hand-off costs it. On the 2-core box (gRPC batch-1, batching off, 8 interleaved pairs of 3 s,
tests.bench.side_by_side), handing every run off under load against keeping runs this short
inline: half_plus_two (60-100 us a run) served 0.75x at 16 clients and 0.78x at 64. With it,
against the policy before (which guessed load from one run in 32 handed off and followed
it): MLP (330-410 us) 1.21x at 16 clients and 1.23x at 64, even at 1 and 4; half_plus_two
even.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from servingd.apis.loop_load import LoopLoad

# A slower run (alone) moves the estimate by this share of the difference.
_RISE = 0.1
# Signatures remembered; the table is cleared when it grows past this (versions come and go).
_MAX_TRACKED = 4096
PROBE_EVERY = 32
PROBE_LIMIT = 1.5
UNMEASURED_PROBE_LIMIT = 10.0
# A run expected within this stays on the loop under load too (see above).
STAY_INLINE_S = 200e-6


class _RunCost:
    __slots__ = ("declined", "measured_alone", "runs", "s_per_element")

    def __init__(self) -> None:
        self.runs = 0
        self.s_per_element = 0.0
        self.measured_alone = False  # the estimate rests on at least one run measured alone
        self.declined = 0  # requests sent to the workers for their estimate


class InlinePolicy:
    """Run-time record per signature, and the inline decision. Thread-safe enough: a lost
    update from two threads recording at once only skews one estimate a little."""

    def __init__(self, max_s: float, min_runs: int = 8, load: LoopLoad | None = None) -> None:
        self.max_s = max_s
        self.min_runs = min_runs
        self.load = load  # None: never loaded (eligible runs always go inline)
        self._costs: dict[Hashable, _RunCost] = {}
        self._workers = threading.Lock()
        self._worker_runs = 0  # worker runs in flight
        self._worker_starts = 0

    def should_inline(self, key: Hashable, elements: int) -> bool:
        if self.max_s <= 0:
            return False
        cost = self._costs.get(key)
        if cost is None or cost.runs < self.min_runs:
            return False
        expected = cost.s_per_element * max(elements, 1)
        if expected <= self.max_s:
            if expected <= STAY_INLINE_S or self.load is None:
                return True
            return not self.load.loaded  # else the loop has other requests to serve
        probe_limit = PROBE_LIMIT if cost.measured_alone else UNMEASURED_PROBE_LIMIT
        if expected > probe_limit * self.max_s:
            return False
        cost.declined += 1
        return cost.declined % PROBE_EVERY == 0

    def record(self, key: Hashable, elements: int, seconds: float, *, alone: bool = True) -> None:
        """One run's time; `alone`: inline, or on a worker that no other worker run overlapped."""
        cost = self._costs.get(key)
        if cost is None:
            if len(self._costs) >= _MAX_TRACKED:
                self._costs.clear()
            cost = self._costs.setdefault(key, _RunCost())
        per_element = seconds / max(elements, 1)
        if cost.runs == 0 or per_element < cost.s_per_element:
            cost.s_per_element = per_element
        elif alone:
            cost.s_per_element += _RISE * (per_element - cost.s_per_element)
        cost.measured_alone = cost.measured_alone or alone
        cost.runs += 1

    def worker_run_started(self) -> int:
        """Call as a worker starts a run; pass what it returns to `worker_run_ended`."""
        with self._workers:
            self._worker_runs += 1
            self._worker_starts += 1
            return self._worker_starts if self._worker_runs == 1 else 0

    def worker_run_ended(self, token: int) -> bool:
        """Call as that run ends: True if no other worker run overlapped it."""
        with self._workers:
            self._worker_runs -= 1
            return token != 0 and token == self._worker_starts
