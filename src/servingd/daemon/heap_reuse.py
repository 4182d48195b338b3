"""Keep freed heap memory for the next request instead of handing it back to the kernel.

glibc's malloc maps each allocation above its mmap threshold (128 KiB at first) afresh and
returns the top of its heap to the kernel once more than its trim threshold is free. A
large request's buffers (a 1 MB JSON body, simdjson's tape, the decoded tensor, TensorFlow's
activations) are allocated and freed once per request, so every request faulted their pages
in again: ~120 minor faults and ~0.5 ms of system time per REST `[64,784]` request, ~11
with the thresholds raised. The price: up to the trim threshold, memory a request freed
stays mapped for the next one instead of going back to the kernel, as TensorFlow Serving's
tcmalloc keeps it.

A version's unload frees its weights and graph at once, and those must go back: with the
thresholds raised, unloading a model of 16 MiB tensors left the process as large as before
(661 -> 661 MiB; 615 -> 561 with glibc's defaults). So every version's loader is wrapped in
`HeapReturningLoader`: after an unload (or a failed load) it calls `release_freed_heap`
(malloc_trim), 0.3-6 ms on a manager thread, and the process shrinks by what the version
held (661 -> 559 MiB).

malloc_trim alone is not enough where a manager thread loaded the version: its tensors then
sit in one of glibc's per-thread arenas, and malloc_trim never shrinks such an arena's top
chunk (glibc's mtrim trims the top of the main arena only). A tensor freed next to the top
merges into it and stays resident; which tensors do depends on the allocation history, so
the same unload returned all of a model's 54 MiB of weights in one run and a quarter in the
next (RSS drops of 60, 28, 43, 27, 60, 27 MiB in six daemon runs; 11 in one CI run). So the
unload itself runs under `returning_freed_heap`: glibc's default trim threshold while
the weights are freed, whose free() then shrinks the arena's heap at once (a unit test: 48
MiB freed in a thread's arena: none of it returned by malloc_trim alone, all 48 with it).
Requests whose buffers are freed during that window return them too: a few faults more for
those, during an unload only.

That holds only for memory TensorFlow hands back to malloc. Where TensorFlow runs its
oneDNN kernels (by default on x86 CPUs with AVX-512 VNNI and the like; its log says "oneDNN
custom operations are on"), its CPU tensors, a model's weights among them, come from a BFC
pool of TensorFlow's own that never shrinks: an unloaded model's 54 MiB of weights stay
allocated (RSS 589 -> 584 MiB over the unload), reused by the next load but not returned.
TensorFlow's TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 takes them from malloc instead, and the same
unload then frees them (587 -> 527-544 MiB). The daemon does not set it: it costs a CNN
speed (MobileNetV2 at batch 8 in-process: 42-49 % slower), and servingd turns nothing on
by default that costs a model more than 5 %. An operator who loads and unloads large
models on such a CPU sets it in the unit's environment (docs/configuration.md).

An operator who sets glibc's own MALLOC_*_ variables (`man mallopt`) keeps them: the
thresholds are raised only where none is set (the release at END runs either way). On a C
library other than glibc the malloc calls do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from servingd.core.loader import Loader, ResourceEstimate

log = logging.getLogger("servingd")

# mallopt(3) parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# glibc's largest mmap threshold on 64-bit (HEAP_MAX_SIZE / 2); mallopt refuses more.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
# Free heap beyond this goes back to the kernel: a few dozen large requests in flight.
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
# glibc's own (DEFAULT_TRIM_THRESHOLD), in force while a version's memory is freed.
DEFAULT_TRIM_THRESHOLD_BYTES = 128 * 1024

_OPERATOR_VARIABLES = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)  # the interpreter's own C library, without a library search
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None  # not glibc: its malloc has other knobs
    return libc


def keep_freed_heap(environ: Mapping[str, str] = os.environ) -> bool:
    """Raise glibc's mmap and trim thresholds; True if they were raised."""
    chosen = [name for name in _OPERATOR_VARIABLES if name in environ]
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        log.debug("malloc thresholds left to the environment (%s)", ", ".join(chosen))
        return False
    libc = _glibc()
    if libc is None:
        return False
    raised = bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    _returning.threshold_raised = raised
    return raised


class _ReturningWindows:
    """How many frees of a version's memory are under way; while any is, the trim threshold
    is glibc's default (only where keep_freed_heap raised it: an operator's stays)."""

    def __init__(self) -> None:
        self.threshold_raised = False
        self._lock = threading.Lock()
        self._open = 0

    def enter(self) -> None:
        with self._lock:
            self._open += 1
            if self._open == 1 and self.threshold_raised:
                _set_trim_threshold(DEFAULT_TRIM_THRESHOLD_BYTES)

    def leave(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open == 0 and self.threshold_raised:
                _set_trim_threshold(TRIM_THRESHOLD_BYTES)


def _set_trim_threshold(size: int) -> None:
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_TRIM_THRESHOLD, size)


_returning = _ReturningWindows()


@contextlib.contextmanager
def returning_freed_heap() -> Iterator[None]:
    """Memory freed inside goes back to the kernel, from every arena, the per-thread ones'
    tops included: run a version's unload in it (see the module)."""
    _returning.enter()
    try:
        yield
    finally:
        _returning.leave()
        release_freed_heap()


def release_freed_heap() -> bool:
    """Hand every free page of every malloc arena back to the kernel (after an unload);
    True if glibc released any. The operator's MALLOC_*_ variables do not stop it: with
    glibc's defaults, freed pages below the top of a heap stay mapped too."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def apply_allocator_settings() -> None:
    """The daemon's memory settings, made once at start before the servers allocate:
    keep_freed_heap."""
    keep_freed_heap()


class HeapReturningLoader:
    """A Loader whose unload (or failed load) hands the version's memory back to the kernel
    (see the module); everything else is the inner loader's."""

    def __init__(self, inner: Loader) -> None:
        self._inner = inner

    def estimate_resources(self) -> ResourceEstimate:
        return self._inner.estimate_resources()

    def load(self) -> None:
        try:
            self._inner.load()
        except BaseException:
            # Its frees are done: what malloc_trim reaches goes back. Not in the window:
            # running every load in it would slow requests for as long as the load runs.
            release_freed_heap()
            raise

    def unload(self) -> None:
        with returning_freed_heap():
            self._inner.unload()

    def servable(self) -> Any:
        return self._inner.servable()
