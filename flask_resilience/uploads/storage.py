"""Keeping an accepted upload on disk, and handing it back as a download."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from flask import Response, current_app, has_app_context, has_request_context, send_file
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import NotFound

from ..log import ExtensionLogger
from ..state import current_settings
from .errors import UploadNotStored, UploadStorageFull, failure_entry, problem_for
from .filenames import generated_name
from .validation import UploadCheck, check_upload, remembered

logger = ExtensionLogger("uploads")

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_ATTEMPTS = 3


def save_upload(
    upload: FileStorage | UploadCheck, directory: str | os.PathLike[str] | None = None
) -> Path:
    """Write an accepted upload into ``directory`` and return the path it was stored at.

    The name is the check's generated ``storage_name``, never the client's. The bytes go
    to a temporary file in the same directory, are flushed to disk, then linked to their
    name, so a reader never sees half a file and an existing file is never replaced.
    ``directory`` is created if needed; without it, ``RESILIENCE_UPLOAD_FOLDER`` is used.

    :param upload: a file checked in this request (by ``@validate_uploads`` or
        :func:`check_upload`), its :class:`UploadCheck`, or a file not checked yet,
        which is checked with the app's default policy first.
    :raises UploadInvalid, UploadTooLarge, UploadTypeNotAllowed: the file was refused.
    :raises UploadStorageFull: 507, the disk or quota is full; nothing was kept.
    :raises UploadNotStored: 500, any other write error; nothing was kept.
    """
    check = upload if isinstance(upload, UploadCheck) else _check_of(upload)
    if check.error is not None or check.info is None or check.file is None:
        failure = check.error
        if failure is None:
            raise ValueError("This UploadCheck has no file to save.")
        raise problem_for([failure_entry(None, check.file, failure)])
    file, name = check.file, check.info.storage_name

    try:
        base = _directory(directory)
        base.mkdir(parents=True, exist_ok=True)
        base = base.resolve(strict=True)
        for attempt in range(_ATTEMPTS):
            target = _inside(base, name)
            if _write(file, base, target):
                return target
            name = generated_name(check.info.extension)  # taken: never overwrite
            logger.warning("Upload name %s was taken (attempt %d)", target.name, attempt + 1)
        raise FileExistsError(errno.EEXIST, "no free name", str(base))
    except OSError as error:
        logger.error("Storing an upload in %s failed", directory, exc_info=True)
        if error.errno in _FULL:
            raise UploadStorageFull(
                "There is no room left to store the upload.",
                errors=[_entry(file, "storage_full", "There is no room left to store the upload.")],
            ) from error
        raise UploadNotStored(
            "The upload could not be stored.",
            errors=[_entry(file, "not_stored", "The upload could not be stored.")],
        ) from error


def send_upload(
    path: str | os.PathLike[str],
    *,
    directory: str | os.PathLike[str] | None = None,
    download_name: str | None = None,
    mimetype: str | None = None,
) -> Response:
    """Serve a stored upload as a download the browser will not render or sniff.

    The response has ``Content-Disposition: attachment``, ``X-Content-Type-Options:
    nosniff`` and a sandboxing ``Content-Security-Policy``. A relative ``path`` is looked
    up in ``directory`` (or ``RESILIENCE_UPLOAD_FOLDER``); a path that leaves that
    directory, through ``..`` or a link, is a 404 like a missing file.

    :param download_name: the name the browser saves it as, such as ``info.safe_name``.
    """
    full = Path(path)
    if directory is not None or not full.is_absolute():
        base = _directory(directory).resolve()
        full = _inside(base, full)
    if not full.is_file():
        raise NotFound()
    response = send_file(
        full,
        mimetype=mimetype,
        as_attachment=True,
        download_name=download_name or full.name,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _check_of(file: FileStorage) -> UploadCheck:
    # A remembered check holds its file, so no other file can have the same id.
    check = remembered().get(id(file)) if has_request_context() else None
    return check or check_upload(file)


def _directory(directory: str | os.PathLike[str] | None) -> Path:
    if directory is not None:
        return Path(directory)
    folder = current_settings().upload_folder
    if folder is None:
        raise RuntimeError("No upload directory: pass one, or set RESILIENCE_UPLOAD_FOLDER.")
    path = Path(folder)
    if not path.is_absolute() and has_app_context():
        path = Path(current_app.instance_path) / path
    return path


def _inside(base: Path, candidate: Path | str) -> Path:
    """``candidate`` under ``base`` after resolving links, or NotFound."""
    resolved = (base / candidate).resolve()
    if resolved.parent != base and base not in resolved.parents:
        raise NotFound()
    return resolved


def _write(file: FileStorage, base: Path, target: Path) -> bool:
    """Copy the stream to ``target`` atomically; False when ``target`` already exists."""
    handle, temporary = tempfile.mkstemp(dir=base, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            file.stream.seek(0)
            shutil.copyfileobj(file.stream, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o640)
        try:
            os.link(temporary, target)  # fails rather than replaces an existing file
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno not in {errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}:
                raise
            return _rename_exclusively(temporary, target)
        return True
    finally:
        with contextlib.suppress(OSError, ValueError):
            file.stream.seek(0)
        if os.path.lexists(temporary):
            os.unlink(temporary)


def _rename_exclusively(temporary: str, target: Path) -> bool:
    """For file systems without hard links: claim the name, then move onto the claim."""
    try:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640))
    except FileExistsError:
        return False
    try:
        os.replace(temporary, target)
    except OSError:
        os.unlink(target)
        raise
    return True


def _entry(file: FileStorage, code: str, detail: str) -> dict[str, object]:
    return {"field": None, "filename": file.filename, "code": code, "detail": detail}
