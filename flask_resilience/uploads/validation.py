"""The validator: name, size, then content, in that order.

Nothing here reads a whole upload: the size comes from seeking the stream, libmagic
sees a bounded head, and the markup scan sees that head and a tail of the same size.
Only ``checksum=True`` reads every byte, in chunks.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from flask import g, has_request_context
from werkzeug.datastructures import FileStorage

from ..state import current_settings
from . import sniffing
from .categories import EXTENSION_TYPES, category_of, is_active_type
from .errors import UploadFailure
from .filenames import CleanName, clean_filename, generated_name
from .policy import UploadPolicy, allowed_extensions_of

_CHUNK = 1024 * 1024
_SPOOL_IN_MEMORY = 1024 * 1024
_NAME_STATUS = {"missing_filename": 400, "unsafe_filename": 400, "dangerous_extension": 415}


@dataclass(frozen=True)
class UploadInfo:
    """What the validator learnt about an accepted upload."""

    original_name: str
    """The name the client sent: show it escaped, never use it as a path."""
    safe_name: str
    """The sanitized name, fit to show and to offer as a download name."""
    storage_name: str
    """A generated name with the file's extension: the one to store it under."""
    extension: str
    mime_type: str
    """The type libmagic detected from the content (not the client's Content-Type)."""
    category: str
    size: int
    sha256: str | None = None
    """Hex digest of the whole file, only with ``checksum=True``."""


@dataclass(frozen=True)
class UploadCheck:
    """The outcome of :func:`check_upload`: ``info`` when ``ok``, else ``error``."""

    file: FileStorage | None = field(repr=False)
    info: UploadInfo | None = None
    error: UploadFailure | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_upload(
    file: FileStorage | None,
    *,
    policy: UploadPolicy | None = None,
    allowed_extensions: Iterable[str] | None = None,
    allowed_categories: Iterable[str] | None = None,
    max_size: int | str | None = None,
    min_size: int = 1,
    allow_active_content: bool = False,
    checksum: bool = False,
) -> UploadCheck:
    """Check one uploaded file against a policy; never raises for what the client sent.

    Pass a :class:`UploadPolicy`, or its options as keywords. The stream is rewound
    afterwards, so ``save_upload`` writes every byte.

    :raises ValueError: the options are wrong (an unknown category, say).
    :raises TypeError: both a policy and options were given.
    """
    if policy is None:
        policy = UploadPolicy(
            allowed_extensions=allowed_extensions,
            allowed_categories=allowed_categories,
            max_size=max_size,
            min_size=min_size,
            allow_active_content=allow_active_content,
            checksum=checksum,
        )
    elif (allowed_extensions, allowed_categories, max_size) != (None, None, None) or (
        min_size != 1 or allow_active_content or checksum
    ):
        raise TypeError("Pass either a policy or its options to check_upload, not both.")

    check = _check(file, policy)
    if has_request_context():
        remembered(create=True)[id(file)] = check
    return check


def validate_uploaded_file_comprehensive(
    file: FileStorage | None,
    allowed_extensions: Iterable[str] | None = None,
    max_size: int | str | None = None,
    allowed_categories: Iterable[str] | None = None,
) -> tuple[bool, str | None, dict[str, Any] | None]:
    """The validator with its first signature: ``(is_valid, error_message, file_info)``.

    ``error_message`` is ``None`` and ``file_info`` a dict (``filename``,
    ``original_filename``, ``storage_name``, ``extension``, ``mime_type``,
    ``category``, ``size``, ``size_formatted``) when valid; otherwise the message and
    ``None``. New code should call :func:`check_upload`.
    """
    check = check_upload(
        file,
        allowed_extensions=allowed_extensions,
        allowed_categories=allowed_categories,
        max_size=max_size,
    )
    info = check.info
    if info is None:
        return False, check.error.message if check.error else None, None
    return (
        True,
        None,
        {
            "filename": info.safe_name,
            "original_filename": info.original_name,
            "storage_name": info.storage_name,
            "extension": info.extension,
            "mime_type": info.mime_type,
            "category": info.category,
            "size": info.size,
            "size_formatted": format_size(info.size),
        },
    )


def format_size(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} bytes"
    for unit in ("KB", "MB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GB"


def remembered(*, create: bool = False) -> dict[int, UploadCheck]:
    """This request's checks, by ``id`` of the file (each check holds its file)."""
    checks: dict[int, UploadCheck] | None = g.get("_resilience_uploads")
    if checks is None:
        checks = {}
        if create:
            g._resilience_uploads = checks
    return checks


def _check(file: FileStorage | None, policy: UploadPolicy) -> UploadCheck:
    if file is None:
        return UploadCheck(file, error=UploadFailure("missing", "No file was sent.", 400))
    name = clean_filename(
        file.filename,
        max_length=policy.max_filename_length,
        allow_active=policy.allow_active_content,
    )
    if not isinstance(name, CleanName):
        return UploadCheck(
            file, error=UploadFailure(name.code, name.message, _NAME_STATUS[name.code])
        )

    extensions = policy.extensions
    if extensions is None:
        extensions = allowed_extensions_of(None, current_settings().upload_categories, False)
        assert extensions is not None
    if name.extension not in extensions:
        allowed = ", ".join(f".{extension}" for extension in sorted(extensions))
        found = (
            f"The extension .{name.extension}" if name.extension else "A file without an extension"
        )
        return _refuse(
            file, "extension_not_allowed", f"{found} is not allowed; allowed: {allowed}.", 415
        )

    max_size = policy.max_size
    if max_size is None:
        max_size = int(current_settings().upload_max_size)
    try:
        size = _measure(file, max_size)
        if size > max_size:
            return _refuse(
                file, "too_large", f"The file is larger than {format_size(max_size)}.", 413
            )
        if size < policy.min_size:
            if size == 0:
                return _refuse(file, "empty", "The file is empty.", 400)
            return _refuse(
                file, "too_small", f"The file is smaller than {policy.min_size} bytes.", 400
            )
        head, tail = _read_ends(file.stream, size)
        digest = _sha256(file.stream) if policy.checksum else None
        file.stream.seek(0)
    except (OSError, ValueError):
        return _refuse(file, "unreadable", "The upload could not be read.", 400)

    mime_type = sniffing.detect(head)
    failure = _judge_content(mime_type, name.extension, extensions, policy, head + tail)
    if failure is not None:
        return UploadCheck(file, error=failure)
    info = UploadInfo(
        original_name=file.filename or "",
        safe_name=name.name,
        storage_name=generated_name(name.extension),
        extension=name.extension,
        mime_type=mime_type,
        category=category_of(name.extension) or "active",
        size=size,
        sha256=digest,
    )
    return UploadCheck(file, info=info)


def _judge_content(
    mime_type: str,
    extension: str,
    extensions: frozenset[str],
    policy: UploadPolicy,
    ends: bytes,
) -> UploadFailure | None:
    if not policy.allow_active_content:
        if is_active_type(mime_type):
            return UploadFailure(
                "active_content",
                f"The content is {mime_type}, which a browser or server would run.",
                415,
            )
        text = mime_type.startswith("text/") or mime_type == "application/json"
        media = mime_type.startswith(("image/", "audio/", "video/"))
        if (text or media) and sniffing.has_markup(ends, text=text):
            return UploadFailure("active_content", "The file holds HTML or script markup.", 415)
    if not any(mime_type in EXTENSION_TYPES[allowed] for allowed in extensions):
        return UploadFailure(
            "type_not_allowed", f"Content of type {mime_type} is not allowed here.", 415
        )
    if mime_type not in EXTENSION_TYPES[extension]:
        return UploadFailure(
            "content_mismatch",
            f"The content is {mime_type}, which does not match the .{extension} extension.",
            415,
        )
    return None


def _refuse(file: FileStorage, code: str, message: str, status: int) -> UploadCheck:
    return UploadCheck(file, error=UploadFailure(code, message, status))


def _measure(file: FileStorage, limit: int) -> int:
    """The stream's size from seeking; an unseekable stream is spooled up to ``limit + 1``."""
    stream = file.stream
    try:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        return size
    except OSError:  # io.UnsupportedOperation: a stream that cannot seek
        pass
    # Not closed here: it becomes the file's stream.
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    size = 0
    while size <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        spool.write(chunk)
        size += len(chunk)
    spool.seek(0)
    file.stream = spool
    return size


def _read_ends(stream: IO[bytes], size: int) -> tuple[bytes, bytes]:
    """The head libmagic sees and, for a larger file, a tail of the same size."""
    stream.seek(0)
    head = _read(stream, sniffing.HEAD_SIZE)
    tail = b""
    if size > sniffing.HEAD_SIZE:
        stream.seek(max(sniffing.HEAD_SIZE, size - sniffing.HEAD_SIZE))
        tail = _read(stream, sniffing.HEAD_SIZE)
    return head, tail


def _read(stream: IO[bytes], count: int) -> bytes:
    parts = []
    while count > 0:
        part = stream.read(count)
        if not part:
            break
        parts.append(part)
        count -= len(part)
    return b"".join(parts)


def _sha256(stream: IO[bytes]) -> str:
    stream.seek(0)
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
