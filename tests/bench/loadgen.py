"""Load generator: h2load (nghttp2, C) driven as a child process, closed-loop clients.

gRPC is HTTP/2: a unary call is one POST of the length-prefixed message with
`content-type: application/grpc`, so h2load sends the same bytes any gRPC client puts on
the wire (the request is serialized once, by the caller). gRPC loads run on one HTTP/2
connection with `clients` concurrent streams (as N callers sharing one channel); REST
loads use one HTTP/1.1 connection per client. Each client sends its next request when the
previous reply has arrived.

h2load runs for warm-up + measured seconds and logs every request (start, status,
latency). Throughput counts the requests that completed inside the measured window,
latency percentiles those that started in it. Failures: a non-2xx HTTP status, and for gRPC
(whose errors are HTTP 200 with a grpc-status trailer and no message) every reply that did
not carry the expected message: h2load's received DATA bytes must equal requests x the
length of the one reply the runner fetched and checked through a real client.

Why not a Python client: on 2 cores a grpc.aio client costs about as much CPU per request
as the server it measures, and its own round trip inflates the 1-client latency. h2load
costs a few microseconds per request (its ceiling against a C server is in the report).
"""

from __future__ import annotations

import re
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
JSON_HEADERS = ("content-type: application/json",)


class LoadgenMissing(RuntimeError):
    """h2load is not installed (Debian: nghttp2-client)."""


def h2load() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise LoadgenMissing("h2load not found: apt-get install nghttp2-client")
    return path


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC message as it travels in HTTP/2 DATA frames."""
    return b"\x00" + struct.pack(">I", len(message)) + message


@dataclass
class Running:
    proc: subprocess.Popen[str]
    log: Path
    started: float  # epoch seconds, just before the child started
    grpc: bool
    tmp: tempfile.TemporaryDirectory[str]


@dataclass
class Result:
    requests: int  # completed OK inside the measured window
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cpu_s: float = 0.0  # h2load's own CPU over its whole run
    run_s: float = 0.0  # h2load's whole run (warm-up included)


def start(
    *,
    url: str,
    body: bytes,
    clients: int,
    seconds: float,
    grpc: bool,
    rate: float | None = None,
) -> Running:
    """Starts h2load for `seconds` against `url` (for gRPC: http://HOST:PORT/pkg.Svc/Method);
    `rate`: requests per second in all, paced (h2load's --rps; None: a closed loop)."""
    tmp = tempfile.TemporaryDirectory(prefix="servingd-h2load-")
    data = Path(tmp.name) / "body"
    data.write_bytes(grpc_frame(body) if grpc else body)
    log = Path(tmp.name) / "requests.tsv"
    connections, streams = (1, clients) if grpc else (clients, 1)
    headers = GRPC_HEADERS if grpc else JSON_HEADERS
    cmd = [
        h2load(),
        f"--clients={connections}",
        f"--max-concurrent-streams={streams}",
        f"--duration={round(seconds * 1000)}ms",  # h2load takes whole units only
        f"--data={data}",
        f"--log-file={log}",
        *(f"--header={h}" for h in headers),
        *([] if grpc else ["--h1"]),
        *([] if rate is None else [f"--rps={max(1, round(rate / connections))}"]),
        url,
    ]
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Running(proc, log, started, grpc, tmp)


def finish(running: Running, window: tuple[float, float], grpc_reply_bytes: int | None) -> Result:
    """Waits for h2load and reads its per-request log for the window [from, to) (epoch s)."""
    proc = running.proc
    before = _children_cpu()
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        running.tmp.cleanup()
        raise
    cpu_s = _children_cpu() - before  # h2load is the only child reaped in between
    try:
        rows = _read_log(running.log)
    finally:
        running.tmp.cleanup()
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited with {proc.returncode}: {out[-2000:]}")
    result = Result(requests=0, run_s=time.time() - running.started)
    result.cpu_s = cpu_s
    begin_us, end_us = window[0] * 1e6, window[1] * 1e6
    starts, codes, lat_us = rows[:, 0], rows[:, 1], rows[:, 2]
    ok = (codes >= 200) & (codes < 300)
    for code in np.unique(codes[~ok]).astype(int):
        result.errors[f"HTTP {code}"] = int(np.sum(codes == code))
    if running.grpc and grpc_reply_bytes:
        data = _data_bytes(out)
        missing = int(ok.sum()) - data // grpc_reply_bytes
        if missing > 0 or data % grpc_reply_bytes:
            result.errors["gRPC status not OK (replies without the expected message)"] = max(
                missing, 1
            )
    ends = starts + lat_us
    done_in_window = ok & (ends >= begin_us) & (ends < end_us)
    result.requests = int(done_in_window.sum())
    started_in_window = ok & (starts >= begin_us) & (starts < end_us)
    result.latencies_ms = lat_us[started_in_window] / 1000.0
    return result


def _read_log(path: Path) -> np.ndarray:
    text = path.read_text() if path.exists() else ""
    if not text.strip():
        return np.zeros((0, 3))
    return np.loadtxt(path, dtype=np.float64, ndmin=2)[:, :3]


def _data_bytes(out: str) -> int:
    """DATA payload bytes h2load received, from its summary line `traffic: ... (N) data`."""
    match = re.search(r"\((\d+)\) data", out)
    if match is None:
        raise RuntimeError(f"h2load printed no traffic summary: {out[-2000:]}")
    return int(match.group(1))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
