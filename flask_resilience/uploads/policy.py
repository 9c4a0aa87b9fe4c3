"""The upload policy: which extensions, how large, and what else is allowed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import current_app, has_app_context

from ..config import SETTINGS, parse_size
from .categories import ACTIVE_EXTENSIONS, CATEGORIES, EXTENSION_TYPES

_KEYS = ("RESILIENCE_UPLOAD_MAX_SIZE", "RESILIENCE_UPLOAD_CATEGORIES", "RESILIENCE_UPLOAD_FOLDER")
_DEFAULTS = {
    setting.name: setting.check(setting.name, setting.default)
    for setting in SETTINGS
    if setting.name in _KEYS
}


class UploadPolicy:
    """What an upload must be to be accepted.

    ::

        avatars = UploadPolicy(allowed_categories=["images"], max_size="2MB")

    With neither extensions nor categories, the app's ``RESILIENCE_UPLOAD_CATEGORIES``
    apply; without ``max_size``, ``RESILIENCE_UPLOAD_MAX_SIZE``. Both are read when a
    file is validated, so a policy may be built at import time.

    :param allowed_extensions: extensions without the dot; each must be one whose
        content can be checked (see the categories table). With categories as well,
        each must belong to one of them.
    :param allowed_categories: ``images``, ``documents``, ``spreadsheets``,
        ``presentations``, ``archives``, ``text``, ``audio``, ``video``.
    :param max_size: bytes, or a size such as ``"10MB"`` (binary units).
    :param min_size: the smallest size in bytes; the default refuses empty files.
    :param allow_active_content: accept HTML, SVG, XML and markup found in a file's
        head or tail. Needed to allow the ``svg``, ``html``, ``htm``, ``xml`` extensions.
    :param checksum: read the whole file once to give its SHA-256 in ``info.sha256``.
    :param max_filename_length: longest ``safe_name``, extension included.
    :raises ValueError: an unknown category or extension, or a size that is not one.
    """

    __slots__ = (
        "allow_active_content",
        "checksum",
        "extensions",
        "max_filename_length",
        "max_size",
        "min_size",
    )

    def __init__(
        self,
        *,
        allowed_extensions: Iterable[str] | None = None,
        allowed_categories: Iterable[str] | None = None,
        max_size: int | str | None = None,
        min_size: int = 1,
        allow_active_content: bool = False,
        checksum: bool = False,
        max_filename_length: int = 128,
    ) -> None:
        self.allow_active_content = allow_active_content
        self.checksum = checksum
        self.extensions = allowed_extensions_of(
            allowed_extensions, allowed_categories, allow_active_content
        )
        self.max_size = None if max_size is None else parse_size(max_size)
        self.min_size = parse_size(min_size)
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(f"max_size {self.max_size} is below min_size {self.min_size}.")
        if not isinstance(max_filename_length, int) or max_filename_length < 32:
            raise ValueError("max_filename_length must be a whole number >= 32.")
        self.max_filename_length = max_filename_length

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self.__slots__))
        return f"UploadPolicy({fields})"


def app_setting(key: str) -> Any:
    """An upload setting of the current app, or its default outside of one."""
    if has_app_context():
        state = current_app.extensions.get("resilience")
        if state is not None:
            return state.config[key]
    return _DEFAULTS[key]


def allowed_extensions_of(
    extensions: Iterable[str] | None, categories: Iterable[str] | None, allow_active: bool
) -> frozenset[str] | None:
    """The extensions a policy allows; ``None`` when it names neither option."""
    in_categories: set[str] | None = None
    if categories is not None:
        in_categories = set()
        for category in [categories] if isinstance(categories, str) else categories:
            if category not in CATEGORIES:
                known = ", ".join(CATEGORIES)
                raise ValueError(
                    f"Unknown upload category {category!r}; the categories are {known}."
                )
            in_categories.update(CATEGORIES[category])
    if extensions is None:
        return None if in_categories is None else frozenset(in_categories)

    allowed = set()
    for raw in [extensions] if isinstance(extensions, str) else extensions:
        extension = str(raw).strip().lower().lstrip(".")
        if extension not in EXTENSION_TYPES:
            raise ValueError(
                f"No content check is known for .{extension}; use an extension of a category."
            )
        if extension in ACTIVE_EXTENSIONS and not allow_active:
            raise ValueError(
                f".{extension} files are active content; allow them with allow_active_content=True."
            )
        if in_categories is not None and extension not in in_categories:
            raise ValueError(f".{extension} is in none of the allowed categories.")
        allowed.add(extension)
    return frozenset(allowed)
