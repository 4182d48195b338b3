"""Keep the garbage collector's full passes short: freeze what start-up made.

Importing TensorFlow leaves ~300,000 objects that live as long as the process (modules,
classes, functions, op registrations). CPython's full (generation 2) collection walks every
tracked object with the GIL held, and it runs once the objects promoted since the last one
reach a quarter of those already in generation 2. Requests in flight get promoted, so under
load it comes back every few seconds: on the 2-vCPU bench box, REST MLP at 64 clients, one
full pass every ~8 s taking 120-180 ms, and the event loop stood still for it (REST p99
150-180 ms where the p50 was 30 ms).

`gc.freeze()` moves every object that exists into a permanent generation that collections
no longer walk. Full passes then take 1-2 ms (they come more often: a quarter of a small
generation is soon reached). Frozen objects are still freed when their last reference goes;
only garbage cycles among them would never be collected. So the daemon freezes after a
collection at start, before any model loads, and again right after TensorFlow's import (by
the first SavedModel version; a daemon of TF Lite models never imports it): a version's
graph (full of cycles) stays collectable when the version unloads.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_objects() -> int:
    """Collects what start-up left as garbage, then freezes every object left; returns how
    many objects are frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d start-up objects: full garbage collections skip them", frozen)
    return frozen
