"""Content sniffing with libmagic, from a bounded head of the stream.

python-magic's ``Magic`` objects serialise every call on a lock of their own and its
module-level functions share one object across threads; each thread gets its own
``Magic`` here instead, so validations on different threads run side by side.
``magic`` is imported on first use: without libmagic, ``import flask_resilience``
still works and ``init_app`` says what to install.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from ..errors import ConfigurationError

HEAD_SIZE = 64 * 1024
"""Bytes given to libmagic and scanned for markup. libmagic finds an OOXML document
(DOCX, XLSX, PPTX) by searching a few KiB past each of the first ZIP entries and gives
up on its own after about 30 KiB; every other type in the categories is known from
its first few hundred bytes. The tail of the file is scanned for markup too."""

_INSTALL_HINT = (
    "Install libmagic: 'apt-get install libmagic1' (Debian, Ubuntu),"
    " 'dnf install file-libs' (Fedora, RHEL), 'brew install libmagic' (macOS)"
    " or 'pip install python-magic-bin' (Windows)."
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"

_MARKUP = re.compile(rb"<\?php|<script|<html|<svg|<iframe|<!doctype\s+html", re.IGNORECASE)
"""Markup a browser or PHP runs; long enough never to turn up by chance in binary data."""

_TEXT_MARKUP = re.compile(rb"<\?=|<%[@=]")
"""Short PHP and ASP/JSP openers: only looked for in text, where they cannot be noise."""

_local = threading.local()


def detect(head: bytes) -> str:
    """The MIME type libmagic reports for ``head``, with this thread's ``Magic``.

    ``application/octet-stream``, which no extension accepts, when libmagic fails.
    """
    magic = _load()
    cookie: Any = getattr(_local, "magic", None)
    if cookie is None:
        cookie = _local.magic = magic.Magic(mime=True)
    try:
        return str(cookie.from_buffer(head))
    except magic.MagicException:  # libmagic gave up on this buffer: fail closed
        return "application/octet-stream"


def has_markup(data: bytes, *, text: bool) -> bool:
    return bool(_MARKUP.search(data) or (text and _TEXT_MARKUP.search(data)))


def check_libmagic() -> None:
    """Make sure libmagic loads and knows a PNG; fail closed if not.

    :raises ConfigurationError: libmagic or its database is missing.
    """
    try:
        found = str(_load().Magic(mime=True).from_buffer(_PNG_SIGNATURE))
    except ImportError as error:
        raise ConfigurationError(
            f"Upload validation needs libmagic, which could not be loaded ({error})."
            f" {_INSTALL_HINT}"
        ) from error
    except Exception as error:  # python-magic raises MagicException, ctypes OSError
        raise ConfigurationError(
            f"libmagic is installed but does not work ({error}); its magic database may be"
            f" missing or the MAGIC environment variable may point elsewhere. {_INSTALL_HINT}"
        ) from error
    if found != "image/png":
        raise ConfigurationError(
            f"libmagic reports {found!r} for a PNG header; its magic database is missing or"
            f" broken, so uploads cannot be checked. {_INSTALL_HINT}"
        )


def _load() -> Any:
    import magic

    return magic
