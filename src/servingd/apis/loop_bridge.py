"""Hands a worker thread's result to the event loop: `watch(future, loop)`.

`asyncio.wrap_future` would chain the two futures, but cancelling its Future cancels the
worker's (whether a running TensorFlow call may stop is the caller's decision), and a
caller that ends its wait with its own exception (a deadline) would make the late result
trip asyncio's assertion that a Future is set once. `watch` gives a Future of the loop that
only mirrors `future`, with one `call_soon_threadsafe` per result: uvloop already merges
the wake-ups that arrive while the loop is busy, so a batch finishing at once wakes it once.

Contract:
- Cancelling the returned Future, or setting it, does not touch `future`; a result that
  arrives after that is dropped.
- A result that arrives after the loop is closed is dropped (nobody waits for it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from typing import Any, TypeVar

T = TypeVar("T")


def watch(
    future: concurrent.futures.Future[T], loop: asyncio.AbstractEventLoop
) -> asyncio.Future[T]:
    """An asyncio Future on `loop` (call from its thread) that mirrors `future` once done."""
    waiter: asyncio.Future[T] = loop.create_future()

    def post(done: concurrent.futures.Future[T]) -> None:
        # Runs on whichever thread completed `done` (or here, if it was done already).
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_mirror, waiter, done)

    future.add_done_callback(post)
    return waiter


def _mirror(waiter: asyncio.Future[Any], done: concurrent.futures.Future[Any]) -> None:
    if waiter.done():  # the caller gave up (cancelled, or its deadline) first
        return
    if done.cancelled():
        waiter.cancel()
        return
    error = done.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(done.result())
