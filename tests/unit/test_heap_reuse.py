"""keep_freed_heap: large allocations freed and made again stop faulting their pages in,
and an operator's own malloc environment is left alone; release_freed_heap hands what was
kept back to the kernel, and returning_freed_heap what a thread's arena kept too;
The daemon leaves TensorFlow's allocator alone (TF_ONEDNN_USE_SYSTEM_ALLOCATOR is opt-in).

Each case runs in a fresh interpreter: malloc's thresholds are process-wide.
"""

from __future__ import annotations

import os
import subprocess
import sys

from servingd.daemon.heap_reuse import keep_freed_heap

# Three 1 MiB buffers written and freed, as a request's body, parse tape and tensor are.
_CHURN = """
import resource, sys
from servingd.daemon.heap_reuse import keep_freed_heap, returning_freed_heap
environ = dict(s.split("=", 1) for s in sys.argv[2:])
kept = sys.argv[1] != "skip" and keep_freed_heap(environ)
def churn():
    return [b"x" * (1 << 20) for _ in range(3)]
if sys.argv[1] == "after-window":
    with returning_freed_heap():
        churn()
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    churn()
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


# 64 MiB in 1 MiB pieces (a model's tensors) freed with the heap kept; then released or not.
_UNLOAD = """
import os, sys
from servingd.daemon.heap_reuse import keep_freed_heap, release_freed_heap
from support.proc_threads import resident_bytes
assert keep_freed_heap({})
weights = [bytearray(b"w" * (1 << 20)) for _ in range(64)]
held = resident_bytes(os.getpid())
del weights
released = sys.argv[1] == "release" and release_freed_heap()
print(released, (held - resident_bytes(os.getpid())) / (1 << 20))
"""


# 48 MiB in 16 MiB pieces made by another thread (a manager thread's load), so they sit in
# a per-thread arena, then freed (the unload) inside returning_freed_heap or not.
_THREAD_UNLOAD = """
import contextlib, os, sys, threading
from servingd.daemon.heap_reuse import keep_freed_heap, release_freed_heap, returning_freed_heap
from support.proc_threads import resident_bytes
assert keep_freed_heap({})
weights = []
def load():
    weights.extend(bytearray(b"w") * (16 << 20) for _ in range(3))
thread = threading.Thread(target=load)
thread.start()
thread.join()
held = resident_bytes(os.getpid())
window = returning_freed_heap() if sys.argv[1] == "window" else contextlib.nullcontext()
with window:
    weights.clear()
if sys.argv[1] == "trim":
    release_freed_heap()
print(True, (held - resident_bytes(os.getpid())) / (1 << 20))
"""


def _run_fresh(script: str, *args: str) -> tuple[bool, float]:
    """Runs `script` in a fresh interpreter; the two words it prints, as (bool, float)."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout.split()
    return out[0] == "True", float(out[1])


def _mib_returned(mode: str) -> tuple[bool, float]:
    """(whether release_freed_heap released anything, MiB the process shrank by)."""
    return _run_fresh(_UNLOAD, mode)


def _faults_per_churn(*environ: str, mode: str = "keep") -> tuple[bool, float]:
    """(whether the thresholds were raised, minor page faults per churn); `mode`: keep,
    skip (glibc's defaults), after-window (kept, after a returning_freed_heap window)."""
    return _run_fresh(_CHURN, mode, *environ)


def test_freed_buffers_are_reused_without_faulting_again() -> None:
    kept, faults = _faults_per_churn()
    assert kept
    # Three fresh MiB are 768 pages; reused heap memory faults none of them again.
    assert faults < 20, faults


def test_without_it_the_same_churn_faults_its_pages_in_every_time() -> None:
    """The condition the module exists for, so the test above can fail."""
    kept, faults = _faults_per_churn(mode="skip")
    assert not kept
    assert faults > 300, faults


def test_the_heap_is_kept_again_after_a_window() -> None:
    kept, faults = _faults_per_churn(mode="after-window")
    assert kept
    assert faults < 20, faults


def test_an_operators_malloc_variables_win() -> None:
    assert not keep_freed_heap({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert not keep_freed_heap({"MALLOC_MMAP_THRESHOLD_": "131072"})
    assert not keep_freed_heap({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"})


def test_unrelated_tunables_do_not_stop_it() -> None:
    kept, faults = _faults_per_churn("GLIBC_TUNABLES=glibc.cpu.x86_ibt=off")
    assert kept
    assert faults < 20, faults


def test_release_hands_the_kept_heap_back() -> None:
    released, mib = _mib_returned("release")
    assert released
    assert mib > 56, mib


def test_without_release_the_kept_heap_stays() -> None:
    """What release_freed_heap is for (an unloaded model's memory), so the test above can
    fail."""
    released, mib = _mib_returned("keep")
    assert not released
    assert mib < 8, mib


def test_the_daemons_settings_leave_tensorflows_allocator_alone() -> None:
    """TF_ONEDNN_USE_SYSTEM_ALLOCATOR slows a CNN by 40 % or more: the operator's choice."""
    script = (
        "import os\n"
        "from servingd.daemon.heap_reuse import apply_allocator_settings\n"
        "apply_allocator_settings()\n"
        "assert 'TF_ONEDNN_USE_SYSTEM_ALLOCATOR' not in os.environ\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)


def test_the_window_hands_back_a_threads_arena_too() -> None:
    _, mib = _run_fresh(_THREAD_UNLOAD, "window")
    assert mib > 44, mib


def test_malloc_trim_alone_leaves_a_threads_arena_top() -> None:
    """Why the unload runs in returning_freed_heap (glibc never trims a per-thread arena's
    top), so the test above can fail."""
    _, mib = _run_fresh(_THREAD_UNLOAD, "trim")
    assert mib < 32, mib
