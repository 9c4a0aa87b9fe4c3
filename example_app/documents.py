"""Document storage and queries shared by the JSON API and the HTML pages.

Every query here takes the organization explicitly: tenant isolation is a
property of this module, not something each view has to remember.
"""

from __future__ import annotations

import mimetypes
import os
import re
import uuid
from pathlib import Path

from flask import current_app
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from werkzeug.datastructures import FileStorage

from .extensions import db
from .models import Document, User

_EXTENSION = re.compile(r"\.[a-z0-9]{1,10}")
TITLE_MAX_LENGTH = 200


class UploadError(ValueError):
    """The upload cannot be stored; the message is safe to show to the user."""


def organization_folder(organization_id: int) -> Path:
    return Path(current_app.config["UPLOAD_FOLDER"]) / str(organization_id)


def document_path(document: Document) -> Path:
    return organization_folder(document.organization_id) / document.stored_name


def stored_name_for(filename: str) -> str:
    """A fresh name for the file system: never the client's, which may be a path."""
    suffix = os.path.splitext(filename)[1].lower()
    return uuid.uuid4().hex + (suffix if _EXTENSION.fullmatch(suffix) else "")


def client_basename(filename: str) -> str:
    # Some browsers send the full client path, with either separator.
    return filename.replace("\\", "/").rsplit("/", 1)[-1].strip()[:255]


def store_upload(owner: User, upload: FileStorage | None, title: str | None = None) -> Document:
    """Write ``upload`` into the owner's organization folder and record it.

    Only basic checks happen here (a named, non-empty file and a sane title).
    :raises UploadError: the upload is missing or unusable.
    """
    if upload is None or not upload.filename:
        raise UploadError("Choose a file to upload (form field 'file').")
    original_filename = client_basename(upload.filename)
    if not original_filename:
        raise UploadError("The file has no name.")
    title = (title or "").strip() or os.path.splitext(original_filename)[0] or original_filename
    if len(title) > TITLE_MAX_LENGTH:
        raise UploadError(f"The title is longer than {TITLE_MAX_LENGTH} characters.")

    folder = organization_folder(owner.organization_id)
    folder.mkdir(parents=True, exist_ok=True)
    stored_name = stored_name_for(original_filename)
    path = folder / stored_name
    upload.save(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise UploadError("The file is empty.")
        document = Document(
            organization_id=owner.organization_id,
            owner=owner,
            title=title,
            original_filename=original_filename,
            stored_name=stored_name,
            # Decided by the server from the name: the client's Content-Type is a claim.
            content_type=mimetypes.guess_type(original_filename)[0] or "application/octet-stream",
            size=size,
        )
        db.session.add(document)
        db.session.commit()
    except BaseException:
        # No row, no file: an orphan on disk would never be cleaned up.
        path.unlink(missing_ok=True)
        raise
    return document


def get_document(organization_id: int, document_id: int) -> Document | None:
    """The document if it belongs to the organization; another tenant's looks missing."""
    return db.session.scalar(
        select(Document)
        .options(joinedload(Document.owner))
        .where(Document.id == document_id, Document.organization_id == organization_id)
    )


def paginate_documents(organization_id: int, page: int, per_page: int | None) -> Pagination:
    """One page of the organization's documents, newest first."""
    config = current_app.config
    if per_page is None or per_page < 1:
        per_page = config["DOCUMENTS_PER_PAGE"]
    return db.paginate(
        select(Document)
        .options(joinedload(Document.owner))
        .where(Document.organization_id == organization_id)
        .order_by(Document.created_at.desc(), Document.id.desc()),
        page=page,
        per_page=per_page,
        max_per_page=config["DOCUMENTS_MAX_PER_PAGE"],
        error_out=False,
    )
