"""The optional `SHA256SUMS` manifest a publisher puts next to a version's files.

    s3://bucket/models/resnet/7/SHA256SUMS
    s3://bucket/models/resnet/7/saved_model.pb
    s3://bucket/models/resnet/7/variables/variables.index ...

Its format is the output of coreutils' `sha256sum`, run in the version directory: one line
per file, 64 hex digits, two spaces (or " *"), the path relative to the version directory
("./" in front is allowed). Blank lines and lines starting with "#" are ignored.

    cd 7 && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS

When a version has one, every other object of the version must be listed in it with the
digest of what was downloaded, and every file it lists must exist; else the version is
refused (and the versions serving stay).
"""

from __future__ import annotations

import re

MANIFEST_NAME = "SHA256SUMS"
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def parse_manifest(text: str) -> dict[str, str]:
    """{relative path: lower-case hex digest}; ValueError naming the first bad line."""
    digests: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"{MANIFEST_NAME} line {number} is not '<sha256>  <path>': {raw!r}")
        path = match[2].removeprefix("./")
        if path in digests:
            raise ValueError(f"{MANIFEST_NAME} line {number} lists {path} twice")
        digests[path] = match[1].lower()
    return digests


def manifest_mismatches(manifest: dict[str, str], downloaded: dict[str, str]) -> list[str]:
    """What disagrees between the manifest and the downloaded files' digests ([]: none)."""
    problems = []
    for path, digest in sorted(downloaded.items()):
        if path == MANIFEST_NAME:
            continue
        expected = manifest.get(path)
        if expected is None:
            problems.append(f"{path} is not in {MANIFEST_NAME}")
        elif expected != digest:
            problems.append(f"{path} has sha256 {digest}, {MANIFEST_NAME} says {expected}")
    for path in sorted(manifest.keys() - downloaded.keys()):
        problems.append(f"{path} is in {MANIFEST_NAME} but not in the store")
    return problems
