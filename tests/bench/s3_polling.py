"""What s3:// base paths cost and how fast they pick a version up, against moto's S3 server.

    python -m tests.bench.s3_polling [--models 100] [--window 120] [--samples 3]
        [--poll-interval 30] [--settle 10]

1. Pickup: one model; a new version's objects are uploaded (half_plus_two, 5 objects) and
   the time from the last object's upload to GetModelStatus AVAILABLE is measured, with
   servingd.yaml's s3: poll interval and settle time left at their defaults (or given).
2. Idle fleet: `--models` models, each its own s3:// base path with one version, nothing
   changing. Over `--window` seconds: S3 requests per minute (servingd_s3_requests_total)
   and the daemon's CPU (utime + stime from /proc, in % of one core).

Servers are child processes on loopback, stopped by PID. Prints a small table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / p) for p in ("src", "tests")]

from support.paths import TF_SERVING_TESTDATA  # noqa: E402
from support.s3_server import MotoServer, upload_version, write_daemon_files  # noqa: E402
from support.servingd_process import ServingdProcess  # noqa: E402
from tests.bench import procs  # noqa: E402

BUCKET = "models"


def write_config(etc: Path, s3: MotoServer, models: int, args: argparse.Namespace) -> Path:
    (etc / "models.d").mkdir(parents=True)
    write_daemon_files(etc, s3)
    tuning = ""
    if args.poll_interval:
        tuning += f"  poll_interval_seconds: {args.poll_interval}\n"
    if args.settle is not None:
        tuning += f"  settle_seconds: {args.settle}\n"
    (etc / "servingd.yaml").write_text(
        "models_dir: models.d\n"
        "logging: {level: warning, target: stderr}\n"
        "monitoring_config_file: monitoring.config\n"
        "s3:\n"
        f"  endpoint: {s3.endpoint}\n"
        f"  cache_dir: {etc / 'cache'}\n"
        "  credentials_file: s3-credentials\n" + tuning
    )
    for i in range(models):
        (etc / f"models.d/m{i}.yaml").write_text(f"base_path: s3://{BUCKET}/m{i}\n")
    return etc / "servingd.yaml"


def metrics(server: ServingdProcess) -> dict[str, float]:
    url = f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=30) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("servingd_s3_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def total(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


def version_available(server: ServingdProcess, model: str, version: int) -> bool:
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/{model}/versions/{version}"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return b'"AVAILABLE"' in reply.read()
    except OSError:
        return False


def pickup(s3: MotoServer, src: Path, args: argparse.Namespace) -> list[float]:
    client = s3.client()
    upload_version(client, BUCKET, "m0/1", src)
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), s3, 1, args)
        with ServingdProcess([f"--config={config}"]) as server:
            server.wait_healthy(300)
            times = []
            for sample in range(args.samples):
                version = sample + 2
                upload_version(client, BUCKET, f"m0/{version}", src)
                uploaded = time.monotonic()
                deadline = uploaded + 600
                while not version_available(server, "m0", version):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"version {version} not AVAILABLE in 600 s")
                    time.sleep(0.05)
                times.append(time.monotonic() - uploaded)
                print(f"pickup sample {sample + 1}: {times[-1]:.1f} s", flush=True)
            return times


def idle_fleet(s3: MotoServer, src: Path, args: argparse.Namespace) -> tuple[float, float]:
    client = s3.client()
    for i in range(args.models):
        upload_version(client, BUCKET, f"m{i}/1", src)
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), s3, args.models, args)
        with ServingdProcess([f"--config={config}"]) as server:
            server.wait_healthy(900)
            assert server.proc is not None
            time.sleep(5)  # the first polls after start-up are behind us
            before, cpu_before, start = (
                metrics(server),
                procs.cpu_seconds(server.proc.pid),
                time.monotonic(),
            )
            time.sleep(args.window)
            after, cpu_after, end = (
                metrics(server),
                procs.cpu_seconds(server.proc.pid),
                time.monotonic(),
            )
    minutes = (end - start) / 60
    requests = total(after, "servingd_s3_requests_total") - total(
        before, "servingd_s3_requests_total"
    )
    fetched = total(after, "servingd_s3_fetched_bytes_total") - total(
        before, "servingd_s3_fetched_bytes_total"
    )
    assert fetched == 0, f"{fetched} bytes fetched while nothing changed"
    return requests / minutes, 100 * (cpu_after - cpu_before) / (end - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--window", type=float, default=120.0)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--poll-interval", type=float, default=0.0, help="default: servingd's")
    parser.add_argument("--settle", type=float, default=None, help="default: servingd's")
    parser.add_argument("--skip-pickup", action="store_true")
    args = parser.parse_args()
    procs.exit_on_sigterm()  # stopped by PID: still stop the S3 server and daemons started
    src = TF_SERVING_TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"
    results = []
    if not args.skip_pickup:
        with MotoServer() as s3:
            s3.client().create_bucket(Bucket=BUCKET)
            times = pickup(s3, src, args)
        results.append(
            ("last object uploaded -> AVAILABLE", f"min {min(times):.1f} s, max {max(times):.1f} s")
        )
    with MotoServer() as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        per_minute, cpu = idle_fleet(s3, src, args)
    results.append((f"{args.models} unchanged models: S3 requests", f"{per_minute:.0f} / min"))
    results.append((f"{args.models} unchanged models: daemon CPU", f"{cpu:.2f} % of one core"))
    interval = args.poll_interval or "default"
    print(f"\nS3 polling (poll interval {interval}, settle {args.settle or 'default'})")
    for name, value in results:
        print(f"  {name:<40} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
