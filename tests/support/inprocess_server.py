"""A ModelServer running in this test process, on its own event-loop thread.

For integration tests that need both real loopback gRPC/REST and the server's objects
(its batching registry, its metrics, reload_models) in the same process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from servingd.config.settings import ServerSettings
from servingd.daemon.model_server import ModelServer
from support.servingd_process import free_ports

T = TypeVar("T")


@dataclass
class InProcessServer:
    server: ModelServer
    loop: asyncio.AbstractEventLoop
    grpc_target: str
    rest_port: int

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Runs `coro` on the server's loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def loopback_settings(**settings: Any) -> ServerSettings:
    """ServerSettings with gRPC and REST on free loopback ports, and `settings` on top."""
    grpc_port, rest_port = free_ports(2)
    return ServerSettings(
        grpc_port=grpc_port,
        grpc_bind_address="127.0.0.1",
        rest_port=rest_port,
        rest_bind_address="127.0.0.1",
        **settings,
    )


@contextmanager
def model_server_in_thread(settings: ServerSettings) -> Iterator[InProcessServer]:
    """Starts the server (waiting until its models settled), yields it, stops it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def make() -> ModelServer:
        server = ModelServer(settings)
        await server.start()
        assert await server.wait_until_settled(120)
        return server

    try:
        server = asyncio.run_coroutine_threadsafe(make(), loop).result(180)
        try:
            yield InProcessServer(
                server, loop, f"127.0.0.1:{settings.grpc_port}", settings.rest_port
            )
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(5.0), loop).result(60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
