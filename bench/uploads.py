"""Upload validation must cost the same for 1 MB and 500 MB, and hold no file in memory.

Both uploads are temporary files with a real PNG header; the rest is a sparse hole made
with ``truncate``, so the 500 MB case needs neither 500 MB of disk writes nor of RAM.
"""

from __future__ import annotations

import struct
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable
from typing import IO

from werkzeug.datastructures import FileStorage

from bench.table import Row, compare
from flask_resilience.uploads import UploadPolicy, check_upload

MB = 1024 * 1024
ROUNDS = 9
REPEAT = 200
POLICY = UploadPolicy(allowed_categories=["images"], max_size=600 * MB)


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x10\x20\x30")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)


def _upload_file(size: int) -> IO[bytes]:
    file = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    file.write(_png())
    file.truncate(size)
    return file


def _validator(file: IO[bytes]) -> Callable[[], object]:
    def validate() -> object:
        file.seek(0)
        check = check_upload(FileStorage(file, filename="photo.png"), policy=POLICY)
        assert check.ok, check.error
        return check

    return validate


def _peak_growth(work: Callable[[], object]) -> float:
    """Bytes allocated at the peak of ``work`` above what was allocated before it."""
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        work()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - baseline


def rows(scale: float = 1.0) -> list[Row]:
    with _upload_file(1 * MB) as small, _upload_file(500 * MB) as large:
        calls = {"1 MB": _validator(small), "500 MB": _validator(large)}
        for call in calls.values():
            call()  # warm up: this thread's libmagic handle, the page cache
        seconds = compare(calls, repeat=REPEAT, rounds=ROUNDS, scale=scale)
        growth = _peak_growth(calls["500 MB"]) / MB
    ratio = seconds["500 MB"] / seconds["1 MB"]
    return [
        Row("validate a 1 MB upload", seconds["1 MB"] * 1e6, "us", "-", True),
        Row("validate a 500 MB upload", seconds["500 MB"] * 1e6, "us", "-", True),
        Row("validation time, 500 MB / 1 MB", ratio, "x", "<= 2x", ratio <= 2),
        Row("peak memory growth validating 500 MB", growth, "MB", "<= 10 MB", growth <= 10),
    ]
