"""From the name a client sent to a name that is safe to show and keep.

The order matters: the name is Unicode-normalised (NFKC) and percent-decoded first, so
that a fullwidth ``shell.php`` and ``shell.php%00.jpg`` are judged as what they become;
then control characters are refused, every extension in the name is checked, and only
then is the stem reduced with :func:`werkzeug.utils.secure_filename`.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from werkzeug.utils import secure_filename

from .categories import DANGEROUS_EXTENSIONS, SERVER_SIDE_EXTENSIONS

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Right-to-left overrides make ``invoice\u202egpj.exe`` look like ``invoiceexe.jpg``."""

_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789"}
)
_SEPARATORS = re.compile(r"[.;:]")
_EXTENSION = re.compile(r"[a-z0-9]{1,16}")
_DECODE_ROUNDS = 4


@dataclass(frozen=True)
class CleanName:
    """A name safe to show, with its lowercased extension ("" when it has none)."""

    name: str
    extension: str


@dataclass(frozen=True)
class NameRefused:
    code: str
    message: str


def clean_filename(
    raw: str | None, *, max_length: int = 128, allow_active: bool = False
) -> CleanName | NameRefused:
    """Judge and sanitize a client's file name.

    :param max_length: the longest name returned, extension included; at least 32, so
        that a generated stem and the longest extension (16) fit.
    :param allow_active: accept a last extension such as ``svg`` or ``html``; a
        server-side extension (``php``, ``asp``...) is refused anywhere all the same.
    """
    if raw is None or not raw.strip():
        return NameRefused("missing_filename", "The file was sent without a file name.")
    name = _decode(raw)
    if name is None or any(_is_control(char) for char in name):
        return NameRefused(
            "unsafe_filename", "The file name holds control characters or a NUL byte."
        )

    # Browsers send a base name; old ones sent the whole client path. Windows drops
    # trailing dots and spaces, so "shell.php." would be stored as shell.php.
    base = re.split(r"[/\\]", name)[-1].strip().rstrip(". ")
    refused = _server_side_extension(base)
    if refused:
        return refused

    stem, dot, extension = base.rpartition(".")
    if not dot:
        stem, extension = base, ""
    extension = extension.strip().lower()
    if not _EXTENSION.fullmatch(extension):
        extension = ""
    if extension in DANGEROUS_EXTENSIONS and not allow_active:
        return NameRefused(
            "dangerous_extension", f"Files with the extension .{extension} are not accepted."
        )
    if extension:
        safe = _safe_stem(stem, max_length - len(extension) - 1) + "." + extension
    else:
        safe = _safe_stem(stem, max_length)
    # Characters secure_filename drops (a soft hyphen in "p\u00adhp", the "<" of
    # "x.php<.:") can join an extension back together: judge the result as well.
    return _server_side_extension(safe) or CleanName(safe, extension)


def generated_name(extension: str) -> str:
    """A fresh name for storage that says nothing the client chose but the extension."""
    return f"{secrets.token_hex(16)}.{extension}" if extension else secrets.token_hex(16)


def _decode(raw: str) -> str | None:
    """NFKC-normalise and percent-decode until the name stops changing."""
    name = unicodedata.normalize("NFKC", raw)
    for _ in range(_DECODE_ROUNDS):
        decoded = unicodedata.normalize("NFKC", unquote(name, errors="replace"))
        if decoded == name:
            return name
        name = decoded
    return None  # still changing: encoded again and again to get past a filter


def _server_side_extension(name: str) -> NameRefused | None:
    inner = {part.strip() for part in _SEPARATORS.split(name.lower())[1:]}
    found = sorted(inner & SERVER_SIDE_EXTENSIONS)
    if found:
        return NameRefused(
            "dangerous_extension", f"The file name holds the server-side extension .{found[0]}."
        )
    return None


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Cs"} or char in _BIDI_CONTROLS


def _safe_stem(stem: str, room: int) -> str:
    safe = secure_filename(stem).lstrip("-._")[:room].rstrip("-._")
    if not safe:
        return ("upload-" + secrets.token_hex(4))[:room]
    if safe.partition(".")[0].upper() in _WINDOWS_DEVICES:
        safe = "_" + safe[: room - 1]
    return safe
