"""``@validate_uploads``: refuse a request's bad uploads before the view runs."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from flask import current_app, g, request
from werkzeug.datastructures import FileStorage

from .errors import UploadFailure, failure_entry, problem_for
from .policy import UploadPolicy
from .validation import UploadCheck, check_upload

P = ParamSpec("P")
R = TypeVar("R")


def validate_uploads(
    *fields: str,
    categories: Iterable[str] | None = None,
    extensions: Iterable[str] | None = None,
    max_size: int | str | None = None,
    min_size: int = 1,
    required: bool = True,
    max_files: int | None = None,
    allow_active_content: bool = False,
    checksum: bool = False,
    policy: UploadPolicy | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Validate the files of the named form fields before the view runs.

    ::

        @app.post("/api/documents")
        @validate_uploads("file", categories=["documents"], max_size="10MB", max_files=1)
        def upload():
            path = save_upload(request.files["file"])

    A bad request ends in problem+json with an ``errors`` list naming each file:
    413 when a file is too large, else 415 when a type is not allowed, else 400
    (a file missing or empty, too many files, a malformed multipart body). ``OPTIONS``
    requests pass. :func:`upload_checks` gives the view the checks.

    :param fields: the form fields holding files; at least one.
    :param required: refuse the request when a field has no file.
    :param max_files: most files per field.
    :param policy: an :class:`UploadPolicy`, instead of its options.
    :raises ValueError: an option is wrong; raised here, when the view is decorated.
    """
    if not fields:
        raise TypeError("Name the form fields to validate: @validate_uploads('file').")
    if max_files is not None and max_files < 1:
        raise ValueError("max_files must be at least 1.")
    if policy is None:
        policy = UploadPolicy(
            allowed_extensions=extensions,
            allowed_categories=categories,
            max_size=max_size,
            min_size=min_size,
            allow_active_content=allow_active_content,
            checksum=checksum,
        )
    chosen = policy

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if request.method != "OPTIONS":
                _check_request(fields, chosen, required=required, max_files=max_files)
            result: R = current_app.ensure_sync(view)(*args, **kwargs)
            return result

        return wrapper

    return decorator


def upload_checks(field: str) -> list[UploadCheck]:
    """The checks ``@validate_uploads`` made for a field in this request, in order."""
    by_field: dict[str, list[UploadCheck]] = g.get("_resilience_upload_fields", {})
    return list(by_field.get(field, []))


def _check_request(
    fields: tuple[str, ...], policy: UploadPolicy, *, required: bool, max_files: int | None
) -> None:
    files = request.files  # a body over the app's limits ends here, in a 413
    multipart = request.mimetype == "multipart/form-data"
    if multipart and not files and not request.form and not _empty_multipart():
        # Werkzeug gives up on a broken body silently: no files, no fields.
        malformed = UploadFailure(
            "malformed",
            "The multipart body could not be read: check its boundary and its parts.",
            400,
        )
        raise problem_for([failure_entry(None, None, malformed)])

    failures: list[dict[str, Any]] = []
    by_field: dict[str, list[UploadCheck]] = {}
    g._resilience_upload_fields = by_field
    for field in fields:
        parts = [part for part in files.getlist(field) if not _unselected(part)]
        if not parts:
            if required:
                failures.append(failure_entry(field, None, _missing(field)))
            continue
        if max_files is not None and len(parts) > max_files:
            too_many = UploadFailure(
                "too_many_files", f"At most {max_files} file(s) may be sent as {field!r}.", 400
            )
            failures.append(failure_entry(field, None, too_many))
            continue
        for part in parts:
            check = check_upload(part, policy=policy)
            by_field.setdefault(field, []).append(check)
            if check.error is not None:
                failures.append(failure_entry(field, part, check.error))
    if failures:
        raise problem_for(failures)


def _empty_multipart() -> bool:
    """No body, or only the closing delimiter: ``--boundary--`` and a line break."""
    length = request.content_length
    if length is None:
        return "chunked" not in request.headers.get("Transfer-Encoding", "").lower()
    return length <= len(request.mimetype_params.get("boundary", "")) + 8


def _unselected(part: FileStorage) -> bool:
    """What a browser sends for a file input left empty: no name and no bytes."""
    if part.filename:
        return False
    stream = part.stream
    try:
        position = stream.tell()
        empty = not stream.read(1)
        stream.seek(position)
    except (OSError, ValueError):
        return False
    return empty


def _missing(field: str) -> UploadFailure:
    hint = "" if request.mimetype == "multipart/form-data" else " as multipart/form-data"
    return UploadFailure("missing", f"Send a file in the {field!r} field{hint}.", 400)
