"""Runs the real servingd as a child process on loopback ports, and stops it by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.paths import REPO_ROOT


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports. All are bound at once while picked: one at a
    time, the kernel may hand out a port just released again (seen: gRPC and REST ports
    equal, and the daemon refusing its flags)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def servingd_command() -> list[str]:
    """The installed entry point next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "servingd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "servingd.daemon.main"]


class ServingdProcess:
    """One servingd child: `with ServingdProcess([...flags]) as server: server.channel()`."""

    def __init__(
        self,
        flags: Sequence[str],
        *,
        rest: bool = True,
        env: dict[str, str] | None = None,
        run_as: str = "",
        command: Sequence[str] | None = None,
    ):
        """``run_as``: a user to run the daemon as (needs root; setpriv drops to it and its
        primary group, with no supplementary groups). ``command``: what to run instead of
        the servingd entry point (it gets the same flags)."""
        self.grpc_port, rest_port = free_ports(2)
        self.rest_port = rest_port if rest else 0
        self.flags = [
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            "--grpc_bind_address=127.0.0.1",
            "--rest_api_bind_address=127.0.0.1",
            *flags,
        ]
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), **(env or {})}
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
            prefix="servingd-", suffix=".log", delete=False
        )
        self.prefix: list[str] = []
        if run_as:
            import pwd

            entry = pwd.getpwnam(run_as)
            self.prefix = [
                "setpriv",
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--clear-groups",
                "--",
            ]
            self.env["HOME"] = tempfile.gettempdir()  # root's home is not the user's
        self.command = list(command) if command is not None else servingd_command()
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> ServingdProcess:
        self.proc = subprocess.Popen(
            [*self.prefix, *self.command, *self.flags],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        return self

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.grpc_target)
        return self._channel

    def wait_healthy(self, timeout: float = 120.0, service: str = "") -> None:
        """Waits for grpc.health.v1 SERVING (every configured model has a version up)."""
        stub = health_pb2_grpc.HealthStub(self.channel())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_running()
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"servingd not healthy after {timeout} s; log:\n{self.output()}")

    def assert_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"servingd exited with {self.proc.returncode}; log:\n{self.output()}"
            )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self) -> ServingdProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        os.unlink(self.log.name)
