"""Reading TFRecord files without TensorFlow (the warmup file of a version is one).

Each record: its length (uint64, little-endian), the masked CRC-32C of those 8 bytes
(uint32), the data, the masked CRC-32C of the data (tensorflow/core/lib/io/record_reader).
A short read or a checksum that does not match is DATA_LOSS, as in TensorFlow.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from servingd.core import errors

_CASTAGNOLI = 0x82F63B78
_MASK_DELTA = 0xA282EAD8


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CASTAGNOLI if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: str) -> Iterator[bytes]:
    """The records of the TFRecord file at `path` (OSError if it cannot be read)."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise errors.DataLoss(f"truncated record at {offset}")
            length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
            if masked_crc32c(length_bytes) != length_crc:
                raise errors.DataLoss(f"corrupted record at {offset}")
            (length,) = struct.unpack("<Q", length_bytes)
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise errors.DataLoss(f"truncated record at {offset}")
            if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise errors.DataLoss(f"corrupted record at {offset}")
            offset += 16 + length
            yield data
