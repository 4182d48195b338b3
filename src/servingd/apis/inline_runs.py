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
16 clients and up to 19 % more at 64 with no inline runs, and 20-30 % less at 1 client.
Nothing the server sees tells those loads apart while every run is inline (grpc.aio hands
it one call at a time; the calls waiting in gRPC's core are invisible, and the in-flight
count stays at 1-2 even at 64 clients), so the policy makes the difference show:

- Every `HANDOFF_EVERY`-th run of a signature that could go inline goes to a worker anyway.
- While any run is on the workers (handed off and not done), a run that could go inline
  goes to a worker too: the loop has other requests to serve meanwhile.
At one client nothing arrives while that one run is away, and the next run is inline again;
under load the requests arriving meanwhile find it there and follow it, and the load keeps
them there until it eases.

A run shorter than two hand-offs (there and back: twice `handoff_s`, the measured delay from
a hand-off to its worker starting the run, with no other worker run busy) frees the loop for
less than the hand-offs cost it, so it stays inline under load too; one in `RETIME_EVERY` of
its runs goes to a worker, to keep `handoff_s` measured. That delay falls at once to a
faster one and rises by a tenth of the gap to a slower one, as the run estimate does.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Hashable
from typing import Any

# A slower run (alone) moves the estimate by this share of the difference.
_RISE = 0.1
# Signatures remembered; the table is cleared when it grows past this (versions come and go).
_MAX_TRACKED = 4096
PROBE_EVERY = 32
PROBE_LIMIT = 1.5
UNMEASURED_PROBE_LIMIT = 10.0
# One in this many runs of a signature that could go inline goes to a worker: the way out
# of inline runs when requests come in faster than the loop can run them (see above).
HANDOFF_EVERY = 32
# One in this many runs too short to leave the loop goes to a worker: it re-times hand-offs.
RETIME_EVERY = 256


class _RunCost:
    __slots__ = ("declined", "eligible", "measured_alone", "runs", "s_per_element")

    def __init__(self) -> None:
        self.runs = 0
        self.s_per_element = 0.0
        self.measured_alone = False  # the estimate rests on at least one run measured alone
        self.declined = 0  # requests sent to the workers for their estimate
        self.eligible = 0  # requests whose estimate was within the limit


class InlinePolicy:
    """Run-time record per signature, and the inline decision. Thread-safe enough: a lost
    update from two threads recording at once only skews one estimate a little."""

    def __init__(self, max_s: float, min_runs: int = 8) -> None:
        self.max_s = max_s
        self.min_runs = min_runs
        self._costs: dict[Hashable, _RunCost] = {}
        self._workers = threading.Lock()
        self._worker_runs = 0  # worker runs in flight
        self._worker_starts = 0
        self._handed_off = 0  # worker runs handed off and not yet done (queued or running)
        # Seconds from a hand-off to its worker starting the run, timed with an idle pool.
        self.handoff_s = 0.0
        self._handoff_timed = False

    def should_inline(self, key: Hashable, elements: int) -> bool:
        if self.max_s <= 0:
            return False
        cost = self._costs.get(key)
        if cost is None or cost.runs < self.min_runs:
            return False
        expected = cost.s_per_element * max(elements, 1)
        if expected <= self.max_s:
            cost.eligible += 1
            if expected <= 2 * self.handoff_s:  # the hand-offs there and back cost more
                return cost.eligible % RETIME_EVERY != 0
            if cost.eligible % HANDOFF_EVERY == 0:
                return False
            return not self._handed_off  # else the loop has their requests to serve
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

    @property
    def runs_handed_off(self) -> int:
        """Runs on the workers (or queued for them) now."""
        return self._handed_off

    def count_handoff(self, future: concurrent.futures.Future[Any]) -> None:
        """Counts `future`'s run as on the workers until it is done (ran, failed, or was
        cancelled before a worker took it)."""
        with self._workers:
            self._handed_off += 1
        future.add_done_callback(self._handoff_done)

    def _handoff_done(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._workers:
            self._handed_off -= 1

    def worker_run_started(self, waited_s: float = 0.0) -> int:
        """Call as a worker starts a run `waited_s` after its hand-off; pass what it returns
        to `worker_run_ended`."""
        with self._workers:
            if self._worker_runs == 0:  # an idle pool: the wait was the hand-off alone
                if not self._handoff_timed or waited_s < self.handoff_s:
                    self.handoff_s = waited_s
                else:
                    self.handoff_s += _RISE * (waited_s - self.handoff_s)
                self._handoff_timed = True
            self._worker_runs += 1
            self._worker_starts += 1
            return self._worker_starts if self._worker_runs == 1 else 0

    def worker_run_ended(self, token: int) -> bool:
        """Call as that run ends: True if no other worker run overlapped it."""
        with self._workers:
            self._worker_runs -= 1
            return token != 0 and token == self._worker_starts
