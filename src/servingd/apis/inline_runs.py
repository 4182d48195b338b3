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
off. Timings come from every run (inline or not), so a model that slows down under load
moves back to the workers by itself.
"""

from __future__ import annotations

from collections.abc import Hashable

# Weight of the newest run in the moving average of seconds per element.
_EWMA_WEIGHT = 0.2
# Signatures remembered; the table is cleared when it grows past this (versions come and go).
_MAX_TRACKED = 4096


class _RunCost:
    __slots__ = ("runs", "s_per_element")

    def __init__(self) -> None:
        self.runs = 0
        self.s_per_element = 0.0


class InlinePolicy:
    """Run-time record per signature, and the inline decision. Thread-safe enough: a lost
    update from two threads recording at once only skews one average a little."""

    def __init__(self, max_s: float, min_runs: int = 8) -> None:
        self.max_s = max_s
        self.min_runs = min_runs
        self._costs: dict[Hashable, _RunCost] = {}

    def should_inline(self, key: Hashable, elements: int) -> bool:
        if self.max_s <= 0:
            return False
        cost = self._costs.get(key)
        if cost is None or cost.runs < self.min_runs:
            return False
        return cost.s_per_element * max(elements, 1) <= self.max_s

    def record(self, key: Hashable, elements: int, seconds: float) -> None:
        cost = self._costs.get(key)
        if cost is None:
            if len(self._costs) >= _MAX_TRACKED:
                self._costs.clear()
            cost = self._costs.setdefault(key, _RunCost())
        per_element = seconds / max(elements, 1)
        if cost.runs == 0:
            cost.s_per_element = per_element
        else:
            cost.s_per_element += _EWMA_WEIGHT * (per_element - cost.s_per_element)
        cost.runs += 1
