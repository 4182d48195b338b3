"""What the S3 store needs to know, from servingd.yaml's `s3:` section and the environment.

No boto3 here: the configuration is checked (--check-config) without it.

    parse_s3_url("s3://bucket/some/prefix") -> ("bucket", "some/prefix")
    load_s3_credentials(path) -> S3Credentials    an AWS credentials file; ConfigError when
        it is unreadable, incomplete or readable by every user
    S3Options.from_settings(..., environ)         servingd.yaml keys first, then the
        variables of TF Serving's S3 file system: S3_ENDPOINT (host[:port] or a URL),
        S3_USE_HTTPS (default 1), S3_VERIFY_SSL (default 1), AWS_REGION, and the
        credentials AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN. Without a
        credentials file nor these variables, botocore's own chain applies (instance
        roles, ~/.aws).
"""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from servingd.core.config_error import ConfigError

SCHEME = "s3://"
# systemd's LoadCredential=s3:... makes the file $CREDENTIALS_DIRECTORY/s3.
SYSTEMD_CREDENTIAL = "s3"
DEFAULT_CACHE_ROOT = "/var/cache/servingd"
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 2  # botocore's retries: one retry per call, then the poll's own backoff


def is_s3_url(path: str) -> bool:
    return path.startswith(SCHEME)


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at the ends); ValueError for a malformed URL."""
    if not is_s3_url(url):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket: write s3://BUCKET/PREFIX/MODEL")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{url!r}: '.' and '..' are not allowed in the prefix")
    return bucket, "/".join(parts)


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


def load_s3_credentials(path: str) -> S3Credentials:
    """An AWS credentials file ([default] aws_access_key_id, aws_secret_access_key, and
    optionally aws_session_token). Refused when every user can read it."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(path, None, f"S3 credentials file cannot be read: {exc}") from None
    if mode & stat.S_IROTH:
        raise ConfigError(
            path,
            None,
            "S3 credentials file is readable by every user: chmod 600 it (or 640 with group "
            "servingd), or pass it with systemd's LoadCredential=s3:PATH",
        )
    sections = parser.sections()
    section = "default" if "default" in sections else (sections[0] if len(sections) == 1 else "")
    if not section:
        raise ConfigError(path, None, "S3 credentials file needs a [default] section")
    values = parser[section]
    key_id = values.get("aws_access_key_id", "").strip()
    secret = values.get("aws_secret_access_key", "").strip()
    if not key_id or not secret:
        raise ConfigError(
            path, None, "S3 credentials file needs aws_access_key_id and aws_secret_access_key"
        )
    return S3Credentials(key_id, secret, values.get("aws_session_token", "").strip())


def systemd_credentials_file(environ: Mapping[str, str]) -> str:
    """$CREDENTIALS_DIRECTORY/s3 when the unit passes one (LoadCredential=s3:...), else ""."""
    directory = environ.get("CREDENTIALS_DIRECTORY", "")
    path = os.path.join(directory, SYSTEMD_CREDENTIAL) if directory else ""
    return path if path and os.path.isfile(path) else ""


def default_cache_dir(environ: Mapping[str, str]) -> str:
    """$CACHE_DIRECTORY/s3 (systemd's CacheDirectory=), else /var/cache/servingd/s3."""
    root = environ.get("CACHE_DIRECTORY", "").split(":")[0] or DEFAULT_CACHE_ROOT
    return os.path.join(root, "s3")


def _flag(value: str, default: bool) -> bool:
    value = value.strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None  # None: AWS
    region: str | None
    path_style: bool
    verify: bool | str  # False, True or a CA bundle path
    poll_interval_s: float
    settle_s: float
    cache_dir: str
    credentials: S3Credentials | None = field(default=None, repr=False)

    @classmethod
    def from_settings(
        cls,
        *,
        endpoint: str,
        region: str,
        path_style: bool | None,
        ca_bundle: str,
        poll_interval_s: float,
        settle_s: float,
        cache_dir: str,
        credentials: S3Credentials | None,
        environ: Mapping[str, str],
    ) -> S3Options:
        endpoint = endpoint or environ.get("S3_ENDPOINT", "")
        if endpoint and "://" not in endpoint:
            https = _flag(environ.get("S3_USE_HTTPS", ""), True)
            endpoint = f"{'https' if https else 'http'}://{endpoint}"
        verify: bool | str = _flag(environ.get("S3_VERIFY_SSL", ""), True)
        if ca_bundle:
            verify = ca_bundle
        if credentials is None:
            key_id = environ.get("AWS_ACCESS_KEY_ID", "")
            secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
            if key_id and secret:
                credentials = S3Credentials(key_id, secret, environ.get("AWS_SESSION_TOKEN", ""))
        return cls(
            endpoint_url=endpoint or None,
            # MinIO, Ceph and most S3-compatible stores want path-style addressing.
            path_style=bool(endpoint) if path_style is None else path_style,
            region=region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"),
            verify=verify,
            poll_interval_s=poll_interval_s,
            settle_s=settle_s,
            cache_dir=cache_dir or default_cache_dir(environ),
            credentials=credentials,
        )
