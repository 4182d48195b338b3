"""daemon.gc_freeze: start-up's objects frozen, garbage collected first, the collector on."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from servingd.daemon.gc_freeze import freeze_startup_objects


class Node:
    """A container that can sit in a reference cycle (only the cyclic collector frees it)."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # this test process's objects go back to the collector


def test_every_object_alive_at_start_up_is_frozen(unfrozen: None) -> None:
    kept = Node()
    frozen = freeze_startup_objects()
    assert frozen == gc.get_freeze_count() > 1000
    assert gc.is_tracked(kept)
    # Frozen: in no generation the collector walks (by identity: some objects' == is odd).
    assert all(o is not kept for g in range(3) for o in gc.get_objects(generation=g))


def test_garbage_left_by_start_up_is_collected_not_frozen(unfrozen: None) -> None:
    dead = _cycle()  # unreachable already: only a collection frees it
    freeze_startup_objects()
    assert dead() is None


def test_cycles_made_after_the_freeze_are_still_collected(unfrozen: None) -> None:
    freeze_startup_objects()
    assert gc.isenabled()  # the collector still runs by itself
    later = _cycle()
    assert later() is not None
    gc.collect()
    assert later() is None
