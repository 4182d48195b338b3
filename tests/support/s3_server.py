"""A real S3 API on loopback for tests: moto's standalone server as a child process.

    with MotoServer() as s3:            # a free port; stopped by PID
        client = s3.client()            # boto3, path-style, the server's own access key
        upload_version(client, "models", "hp2/1", SRC_DIR)
        s3.stop(); s3.start()           # the store going away and coming back (empty)

moto keeps everything in memory: a restarted server is empty. With `auth=True` it checks
signatures (moto's IAM authentication): after start() one IAM user with every right
exists, and its key (`access_key`, `secret_key`) is the only one that works; without, any
key is accepted (the fixed ACCESS_KEY / SECRET_KEY are used).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support.servingd_process import free_port

REGION = "us-east-1"
ACCESS_KEY = "servingd-test"
SECRET_KEY = "servingd-test-secret"


class MotoServer:
    def __init__(self, port: int = 0, *, auth: bool = False) -> None:
        self.port = port or free_port()
        self.auth = auth
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="moto-", suffix=".log", delete=False
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        script = Path(sys.executable).parent / "moto_server"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # With auth, requests are authenticated after the first three (the IAM calls).
            env={**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if self.auth else {})},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {Path(self.log.name).read_text()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        else:
            self.stop()
            raise TimeoutError(f"moto_server not answering after {timeout} s")
        if self.auth:
            self._create_user()
        return self

    def _create_user(self) -> None:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="servingd")
        iam.put_user_policy(
            UserName="servingd",
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="servingd")["AccessKey"]
        self.access_key = str(key["AccessKeyId"])
        self.secret_key = str(key["SecretAccessKey"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def client(self, access_key: str = "", secret_key: str = "") -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=REGION,
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()
        os.unlink(self.log.name)


def write_daemon_files(etc: Path, server: MotoServer) -> None:
    """What a daemon's servingd.yaml names for S3: a root-only `s3-credentials` file with
    the server's key, and `monitoring.config` (Prometheus at TF Serving's default path)."""
    credentials = etc / "s3-credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id = {server.access_key}\n"
        f"aws_secret_access_key = {server.secret_key}\n"
    )
    credentials.chmod(0o600)
    (etc / "monitoring.config").write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'
    )


def version_files(src: Path) -> list[tuple[str, bytes]]:
    return [
        (p.relative_to(src).as_posix(), p.read_bytes())
        for p in sorted(src.rglob("*"))
        if p.is_file()
    ]


def upload_version(
    client: Any,
    bucket: str,
    prefix: str,
    src: Path,
    *,
    manifest: bool = False,
    corrupt: str = "",
) -> None:
    """Uploads every file of `src` under `prefix/`; with `manifest`, a SHA256SUMS too
    (computed before `corrupt`, a relative path, is changed: a version that fails it)."""
    files = version_files(src)
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files]
    for name, data in files:
        body = data if name != corrupt else bytes([data[0] ^ 0xFF]) + data[1:]
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=body)
    if manifest:
        client.put_object(Bucket=bucket, Key=f"{prefix}/SHA256SUMS", Body="".join(lines).encode())
