"""S3 base paths (`s3://BUCKET/PREFIX/MODEL`): a VersionStore over an S3-compatible API.

Versions are the numbered "directories" under the base path: the objects whose keys start
with `PREFIX/MODEL/<number>/`. One poll of a model is one ListObjectsV2 call (one per 1000
objects). The settle rule of servingd.sources.polling applies with each object's size and
ETag as the fingerprint and its LastModified as the mtime (moved to this host's clock by
the skew the reply's Date header shows), so a version whose upload is in progress (its
listing still changes) is not loaded.

A chosen version is fetched whole into the cache,
`<cache_dir>/<bucket>/<prefix>/<version>`: downloaded under a temporary name
(`.tmp-<version>-...` beside it), each object with GetObject If-Match its listed ETag, its
size and ETag checked (and its MD5 when the ETag is a single-part upload's), the
SHA256SUMS manifest checked when the version has one (servingd.sources.s3.manifest), a
record of what was fetched written inside (`.servingd-s3.json`), then renamed into place.
Only then does the loader see it. A cached version whose record matches the listing is
not downloaded again; cached versions are what a restart serves when the store is down.

boto3 is imported when the first S3 base path is polled, never otherwise.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from servingd.core.version_files import MODEL_FILES
from servingd.sources.s3.manifest import MANIFEST_NAME, manifest_mismatches, parse_manifest
from servingd.sources.s3.metrics import (
    S3_ERRORS,
    S3_FETCH_SECONDS,
    S3_FETCHED_BYTES,
    S3_POLLS,
    S3_REQUESTS,
)
from servingd.sources.s3.options import (
    CONNECT_TIMEOUT_S,
    MAX_ATTEMPTS,
    READ_TIMEOUT_S,
    S3Options,
    parse_s3_url,
)
from servingd.sources.version_dirs import parse_version
from servingd.sources.version_store import (
    FetchError,
    Fingerprint,
    StoreError,
    VersionEntry,
)

logger = logging.getLogger(__name__)

RECORD_NAME = ".servingd-s3.json"
CHUNK = 1 << 20
AUTH_ERRORS = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "403",
    }
)


@dataclass(frozen=True, slots=True)
class S3Object:
    relative: str  # the key below the version's prefix
    key: str
    size: int
    etag: str  # as listed, without quotes
    modified_ns: int


@dataclass(frozen=True, slots=True)
class S3VersionEntry:
    location: str  # s3://bucket/prefix/<version>
    bucket: str
    prefix: str
    objects: tuple[S3Object, ...]

    def has_model(self) -> bool:
        return any(o.relative in MODEL_FILES for o in self.objects)

    def fingerprint(self) -> tuple[Fingerprint, int]:
        return (
            tuple((o.relative, o.size, o.etag) for o in self.objects),
            max((o.modified_ns for o in self.objects), default=0),
        )


def _clock_skew_ns(reply: dict[str, Any]) -> int:
    """This host's clock minus the store's (from the reply's Date header), so that the
    settle rule compares LastModified with this host's clock; 0 when unknown."""
    date = reply.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date", "")
    try:
        server = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return 0
    skew = time.time_ns() - int(server.timestamp() * 1e9)
    # The Date header has a resolution of one second: ignore less than that.
    return skew if abs(skew) > 2_000_000_000 else 0


def _safe_relative(relative: str) -> bool:
    parts = relative.split("/")
    return all(p not in ("", ".", "..") for p in parts)


class S3Store:
    """A VersionStore over S3; see the module docstring."""

    remote = True

    def __init__(self, options: S3Options, client: Any = None) -> None:
        """`client`: a boto3 S3 client (tests); else one is built from `options`."""
        self.options = options
        self.poll_interval_s = options.poll_interval_s
        self.settle_s = options.settle_s
        self._client = client
        self._client_lock = threading.Lock()
        self._closed = threading.Event()

    def close(self) -> None:
        """Stops downloads in progress at their next chunk (the daemon is stopping)."""
        self._closed.set()

    # ----------------------------------------------------------------- the client

    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3.session
        from botocore.config import Config

        o = self.options
        credentials: dict[str, str] = {}
        if o.credentials is not None:
            credentials = {
                "aws_access_key_id": o.credentials.access_key_id,
                "aws_secret_access_key": o.credentials.secret_access_key,
            }
            if o.credentials.session_token:
                credentials["aws_session_token"] = o.credentials.session_token
        session = boto3.session.Session(region_name=o.region or "us-east-1", **credentials)
        return session.client(
            "s3",
            endpoint_url=o.endpoint_url,
            verify=o.verify,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                s3={"addressing_style": "path" if o.path_style else "auto"},
                max_pool_connections=32,
            ),
        )

    def _describe(self, exc: Exception, bucket: str) -> tuple[str, bool]:
        """(what went wrong, naming the bucket; whether it is a client-side refusal)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return f"bucket {bucket} does not exist (NoSuchBucket)", True
            if code in AUTH_ERRORS or status == 403:
                return (
                    f"access to bucket {bucket} was refused ({code or status}): "
                    "check the S3 credentials and the bucket policy",
                    True,
                )
            return f"bucket {bucket}: {code or status}: {error.get('Message', exc)}", False
        if isinstance(exc, NoCredentialsError):
            return f"bucket {bucket}: no S3 credentials configured", True
        if isinstance(exc, BotoCoreError | OSError):
            where = self.options.endpoint_url or "AWS S3"
            return f"bucket {bucket}: the store at {where} is unreachable ({exc})", False
        raise exc

    # ----------------------------------------------------------------- VersionStore

    def list_versions(self, model: str, base_path: str) -> dict[int, VersionEntry]:
        bucket, prefix = parse_s3_url(base_path)
        start = f"{prefix}/" if prefix else ""
        by_name: dict[str, list[S3Object]] = {}
        try:
            client = self.client()
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": start}
                if token:
                    kwargs["ContinuationToken"] = token
                S3_REQUESTS.labels(model, "ListObjectsV2").inc()
                page = client.list_objects_v2(**kwargs)
                skew_ns = _clock_skew_ns(page)
                for item in page.get("Contents", []):
                    key = str(item["Key"])
                    name, _, relative = key[len(start) :].partition("/")
                    if parse_version(name) is None or not relative or key.endswith("/"):
                        continue
                    by_name.setdefault(name, []).append(
                        S3Object(
                            relative,
                            key,
                            int(item["Size"]),
                            str(item["ETag"]).strip('"'),
                            int(item["LastModified"].timestamp() * 1e9) + skew_ns,
                        )
                    )
                if not page.get("IsTruncated"):
                    break
                token = page.get("NextContinuationToken")
        except Exception as exc:
            reason, _ = self._describe(exc, bucket)
            S3_POLLS.labels(model, "error").inc()
            S3_ERRORS.labels(model, "list").inc()
            raise StoreError(f"cannot be listed: {reason}") from None
        names: dict[int, str] = {}
        for name in sorted(by_name):  # `7` and `007`: the canonical spelling wins
            version = parse_version(name)
            assert version is not None
            if version not in names or name == str(version):
                names[version] = name
        S3_POLLS.labels(model, "ok").inc()
        base = base_path.rstrip("/")
        return {
            version: S3VersionEntry(
                f"{base}/{version}",
                bucket,
                f"{start}{name}/",
                tuple(sorted(by_name[name], key=lambda o: o.relative)),
            )
            for version, name in names.items()
        }

    def cached_versions(self, base_path: str) -> dict[int, str]:
        directory = self._cache_of(base_path)
        found: dict[int, str] = {}
        try:
            names = os.listdir(directory)
        except OSError:
            return found
        for name in names:
            version = parse_version(name)
            path = os.path.join(directory, name)
            if version is not None and os.path.isfile(os.path.join(path, RECORD_NAME)):
                found[version] = path
        return found

    def prune(self, base_path: str, keep: set[int]) -> None:
        directory = self._cache_of(base_path)
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            version = parse_version(name)
            stale_tmp = name.startswith(".tmp-") or name.startswith(".old-")
            if (version is not None and version not in keep) or stale_tmp:
                logger.info("S3 cache: removing %s (not aspired)", os.path.join(directory, name))
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)

    def materialize(self, model: str, version: int, entry: VersionEntry) -> str:
        assert isinstance(entry, S3VersionEntry)
        directory = self._cache_of(entry.location.rsplit("/", 1)[0])
        dest = os.path.join(directory, str(version))
        if self._record_matches(dest, entry):
            return dest
        started = time.monotonic()
        tmp = os.path.join(directory, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
        try:
            os.makedirs(tmp)
            fetched = self._download(model, entry, tmp)
            self._verify_manifest(model, entry, tmp, fetched)
            with open(os.path.join(tmp, RECORD_NAME), "w", encoding="utf-8") as f:
                json.dump(self._record(entry), f)
            if os.path.exists(dest):
                old = os.path.join(directory, f".old-{version}-{uuid.uuid4().hex[:8]}")
                os.rename(dest, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, dest)
        except FetchError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            S3_ERRORS.labels(model, "verify" if exc.permanent else "fetch").inc()
            raise
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            S3_ERRORS.labels(model, "fetch").inc()
            raise FetchError(
                f"Model {model} version {version}: cannot write the cache {directory}: {exc}",
                permanent=False,
            ) from None
        S3_FETCH_SECONDS.labels(model).observe(time.monotonic() - started)
        logger.info(
            "Model %s version %d fetched from %s into %s (%d objects, %.1fs)",
            model,
            version,
            entry.location,
            dest,
            len(entry.objects),
            time.monotonic() - started,
            extra={"MODEL_NAME": model, "MODEL_VERSION": str(version)},
        )
        return dest

    # ----------------------------------------------------------------- fetching

    def _cache_of(self, base_path: str) -> str:
        bucket, prefix = parse_s3_url(base_path)
        return os.path.join(self.options.cache_dir, bucket, *prefix.split("/"))

    @staticmethod
    def _record(entry: S3VersionEntry) -> dict[str, Any]:
        return {
            "source": entry.location,
            "objects": [[o.relative, o.size, o.etag] for o in entry.objects],
        }

    def _record_matches(self, dest: str, entry: S3VersionEntry) -> bool:
        try:
            with open(os.path.join(dest, RECORD_NAME), encoding="utf-8") as f:
                return bool(json.load(f) == self._record(entry))
        except (OSError, ValueError):
            return False

    def _download(self, model: str, entry: S3VersionEntry, tmp: str) -> dict[str, str]:
        """Every object into `tmp`; {relative path: sha256 hex}."""
        version = entry.location.rsplit("/", 1)[1]
        what = f"Model {model} version {version} ({entry.location})"
        client = self.client()
        digests: dict[str, str] = {}
        for obj in entry.objects:
            if not _safe_relative(obj.relative):
                raise FetchError(f"{what}: refused object key {obj.key!r}", permanent=True)
            path = os.path.join(tmp, *obj.relative.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            sha256 = hashlib.sha256()
            md5 = hashlib.md5(usedforsecurity=False)
            written = 0
            try:
                S3_REQUESTS.labels(model, "GetObject").inc()
                reply = client.get_object(Bucket=entry.bucket, Key=obj.key, IfMatch=obj.etag)
                etag = str(reply.get("ETag", "")).strip('"')
                if etag != obj.etag:
                    raise FetchError(
                        f"{what}: {obj.relative} changed while fetching (ETag {etag}, "
                        f"listed {obj.etag})",
                        permanent=False,
                    )
                body = reply["Body"]
                with open(path, "wb") as f:
                    while chunk := body.read(CHUNK):
                        if self._closed.is_set():
                            raise FetchError(f"{what}: not fetched, stopping", permanent=False)
                        f.write(chunk)
                        sha256.update(chunk)
                        md5.update(chunk)
                        written += len(chunk)
            except FetchError:
                raise
            except Exception as exc:
                reason, _ = self._describe(exc, entry.bucket)
                raise FetchError(f"{what}: {obj.relative}: {reason}", permanent=False) from None
            finally:
                S3_FETCHED_BYTES.labels(model).inc(written)
            if written != obj.size:
                raise FetchError(
                    f"{what}: {obj.relative} is {written} bytes, the listing says {obj.size}",
                    permanent=False,
                )
            if "-" not in obj.etag and len(obj.etag) == 32 and md5.hexdigest() != obj.etag:
                raise FetchError(
                    f"{what}: {obj.relative}: MD5 {md5.hexdigest()} does not match its "
                    f"ETag {obj.etag}",
                    permanent=True,
                )
            digests[obj.relative] = sha256.hexdigest()
        return digests

    @staticmethod
    def _verify_manifest(
        model: str, entry: S3VersionEntry, tmp: str, digests: dict[str, str]
    ) -> None:
        if MANIFEST_NAME not in digests:
            return
        version = entry.location.rsplit("/", 1)[1]
        what = f"Model {model} version {version} ({entry.location})"
        try:
            with open(os.path.join(tmp, MANIFEST_NAME), encoding="utf-8") as f:
                manifest = parse_manifest(f.read())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise FetchError(f"{what}: {exc}", permanent=True) from None
        problems = manifest_mismatches(manifest, digests)
        if problems:
            raise FetchError(
                f"{what} is refused, it does not match its {MANIFEST_NAME}: "
                + "; ".join(problems[:5])
                + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
                permanent=True,
            )
