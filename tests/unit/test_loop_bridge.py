"""loop_bridge.watch: results, errors and cancellations of worker-thread futures reach the
loop; a waiter the caller gave up on, or a loop already closed, drops the late result."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

from servingd.apis.loop_bridge import watch


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_result_and_exception_cross_from_a_thread() -> None:
    async def main() -> tuple[int, BaseException | None]:
        loop = asyncio.get_running_loop()
        ok: concurrent.futures.Future[int] = concurrent.futures.Future()
        bad: concurrent.futures.Future[int] = concurrent.futures.Future()
        waiters = watch(ok, loop), watch(bad, loop)
        threading.Thread(
            target=lambda: (ok.set_result(7), bad.set_exception(KeyError("k")))
        ).start()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        return results[0], results[1]

    value, error = _run(main())
    assert value == 7
    assert isinstance(error, KeyError)


def test_cancelled_future_cancels_the_waiter_and_a_done_one_is_mirrored_at_once() -> None:
    async def main() -> tuple[bool, int]:
        loop = asyncio.get_running_loop()
        gone: concurrent.futures.Future[int] = concurrent.futures.Future()
        gone.cancel()
        done: concurrent.futures.Future[int] = concurrent.futures.Future()
        done.set_result(3)
        waiter = watch(gone, loop)
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return waiter.cancelled(), await watch(done, loop)

    assert _run(main()) == (True, 3)


def test_a_waiter_the_caller_gave_up_on_leaves_the_future_alone() -> None:
    async def main() -> tuple[bool, BaseException | None]:
        loop = asyncio.get_running_loop()
        cancelled: concurrent.futures.Future[int] = concurrent.futures.Future()
        expired: concurrent.futures.Future[int] = concurrent.futures.Future()
        first = watch(cancelled, loop)
        first.cancel()
        second = watch(expired, loop)
        second.set_exception(TimeoutError("deadline"))  # as a request's deadline does
        errors: list[BaseException] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx["exception"]))
        # Both arrive after the caller gave up: dropped quietly.
        thread = threading.Thread(target=lambda: (cancelled.set_result(1), expired.set_result(2)))
        thread.start()
        thread.join()  # both hand-offs are queued on the loop now
        for _ in range(3):
            await asyncio.sleep(0)
        return cancelled.cancelled() or expired.cancelled(), errors[0] if errors else None

    assert _run(main()) == (False, None)


def test_a_result_after_the_loop_closed_is_dropped() -> None:
    loop = asyncio.new_event_loop()
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    waiter = watch(future, loop)
    loop.close()
    future.set_result(5)  # no RuntimeError reaches the thread that finished the work
    assert not waiter.done()
