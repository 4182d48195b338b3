"""REST bodies are admitted before they are read: big, abandoned and slow uploads.

With an in-flight cap of 2, eight clients each send a 200 MiB :predict body but hold back
its last byte: two are admitted and buffered, six are refused at once (503) without being
read, so the daemon's resident memory stays under 1 GiB, and comes back within 10 s of the
clients leaving. A declared Content-Length over the limit is 413 before any body byte is
sent. A body that arrives too slowly (shorter than its Content-Length, a chunked body that
never ends, a byte every 0.5 s) is 408 at the REST timeout, not a multiple of it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.proc_threads import resident_bytes
from support.servingd_process import ServingdProcess

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
UPLOAD = 200 * MIB
TIMEOUT_S = 2.0
HEAD = b"POST /v1/models/hp2:predict HTTP/1.1\r\nHost: x\r\n"


def _server(testdata: Path, *flags: str) -> ServingdProcess:
    base = testdata / "saved_model_half_plus_two_cpu"
    return ServingdProcess(["--model_name=hp2", f"--model_base_path={base}", *flags])


@pytest.fixture(scope="module")
def slow_server(testdata: Path) -> Iterator[ServingdProcess]:
    with _server(testdata, f"--rest_api_timeout_in_ms={int(TIMEOUT_S * 1000)}") as s:
        s.wait_healthy()
        yield s


def _answer(sock: socket.socket, timeout: float = 30.0) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096)
    except (ConnectionError, TimeoutError) as exc:
        return repr(exc).encode()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _rss_mib(pid: int) -> float:
    return resident_bytes(pid) / MIB


def _upload_all_but_the_last_byte(sock: socket.socket, sent: threading.Event) -> None:
    chunk = b"1" * MIB
    try:
        sock.sendall(HEAD + f"Content-Length: {UPLOAD}\r\n\r\n".encode())
        for _ in range(UPLOAD // MIB - 1):
            sock.sendall(chunk)
        sock.sendall(chunk[:-1])
    except OSError:
        pass  # refused: the server answered and closed the connection
    finally:
        sent.set()


def test_abandoned_big_uploads_hold_at_most_the_cap_and_memory_comes_back(
    testdata: Path,
) -> None:
    with _server(testdata, "--max_in_flight_requests=2") as server:
        server.wait_healthy()
        pid = server.proc.pid
        baseline = _rss_mib(pid)
        sockets = [socket.create_connection(("127.0.0.1", server.rest_port)) for _ in range(8)]
        done = [threading.Event() for _ in sockets]
        senders = [
            threading.Thread(target=_upload_all_but_the_last_byte, args=(s, d), daemon=True)
            for s, d in zip(sockets, done, strict=True)
        ]
        for sender in senders:
            sender.start()
        peak = baseline
        deadline = time.monotonic() + 120
        while not all(d.is_set() for d in done) and time.monotonic() < deadline:
            peak = max(peak, _rss_mib(pid))
            time.sleep(0.05)
        assert all(d.is_set() for d in done), "the uploads did not finish within 120 s"
        for _ in range(20):  # the admitted bodies sit in the server, waiting for a last byte
            peak = max(peak, _rss_mib(pid))
            time.sleep(0.05)
        statuses = []
        for sock in sockets:
            sock.setblocking(True)
            sock.settimeout(0.5)
            try:
                statuses.append(_status(sock.recv(4096)))
            except (TimeoutError, ConnectionError):
                statuses.append(0)  # admitted: still waiting for its last byte
        left_at = time.monotonic()
        for sock in sockets:
            sock.close()
        after = _rss_mib(pid)
        while after > baseline + 100 and time.monotonic() - left_at < 10:
            time.sleep(0.2)
            after = _rss_mib(pid)
        returned_s = time.monotonic() - left_at
        print(
            f"RSS baseline {baseline:.0f} MiB, peak {peak:.0f} MiB, {after:.0f} MiB "
            f"{returned_s:.1f} s after the clients left; answers {sorted(statuses)}"
        )
        assert sorted(statuses) == [0, 0, 503, 503, 503, 503, 503, 503]
        assert peak < 1024
        assert after <= baseline + 100
        server.assert_running()


def test_a_declared_length_over_the_limit_is_413_before_the_body(
    slow_server: ServingdProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.rest_port)) as sock:
        sock.sendall(HEAD + b"Content-Length: 10000000000\r\n\r\n")
        answer = _answer(sock, 10)
    assert _status(answer) == 413, answer[:200]
    assert b'"error"' in answer and b"rest_api_max_body_bytes" in answer


def _short_body(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(HEAD + b'Content-Length: 100\r\n\r\n{"inputs"')


def _endless_chunks(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    while not stop.wait(0.3):
        sock.sendall(b"1\r\n \r\n")


def _a_byte_every_half_second(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(HEAD + b"Content-Length: 1000\r\n\r\n")
    while not stop.wait(0.5):
        sock.sendall(b" ")


@pytest.mark.parametrize("send", [_short_body, _endless_chunks, _a_byte_every_half_second])
def test_a_slow_body_is_408_at_the_timeout(slow_server: ServingdProcess, send: object) -> None:
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", slow_server.rest_port)) as sock:
        start = time.monotonic()
        sender = threading.Thread(target=_keep_sending, args=(send, sock, stop), daemon=True)
        sender.start()
        answer = _answer(sock, 30)
        elapsed = time.monotonic() - start
        stop.set()
        sender.join(5)
    assert _status(answer) == 408, answer[:200]
    assert b'"error"' in answer
    # The timeout, plus a generous margin for a busy box: far below the 3x it used to be.
    assert TIMEOUT_S - 0.1 <= elapsed < TIMEOUT_S + 2.5, elapsed


def _keep_sending(send: object, sock: socket.socket, stop: threading.Event) -> None:
    with contextlib.suppress(OSError):  # the server answered and closed the connection
        send(sock, stop)  # type: ignore[operator]
