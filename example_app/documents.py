"""Document storage and queries shared by the JSON API and the HTML pages.

Every query here takes the organization explicitly: tenant isolation is a
property of this module, not something each view has to remember.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from flask_resilience.uploads import UploadCheck, UploadPolicy, save_upload

from .extensions import db
from .models import ID_MAX, Document, User

TITLE_MAX_LENGTH = 200

DOCUMENT_UPLOADS = UploadPolicy(
    allowed_categories=["documents", "spreadsheets", "presentations", "images", "text"],
    max_size="10MB",
)
"""What a document may be, for the API and the upload form alike."""


class UploadError(ValueError):
    """The upload cannot be stored; the message is safe to show to the user."""


def organization_folder(organization_id: int) -> Path:
    return Path(current_app.config["UPLOAD_FOLDER"]) / str(organization_id)


def store_document(owner: User, check: UploadCheck, title: str | None = None) -> Document:
    """Store a checked upload in the owner's organization folder and record it.

    :param check: the upload's check against :data:`DOCUMENT_UPLOADS`.
    :raises UploadError: the check refused the file, or the title is too long.
    """
    info = check.info
    if info is None:  # refused: the check says why
        raise UploadError(check.error.message if check.error else "No file was sent.")
    title = (title or "").strip() or Path(info.safe_name).stem
    if len(title) > TITLE_MAX_LENGTH:
        raise UploadError(f"The title is longer than {TITLE_MAX_LENGTH} characters.")

    path = save_upload(check, organization_folder(owner.organization_id))
    try:
        document = Document(
            organization_id=owner.organization_id,
            owner=owner,
            title=title,
            original_filename=info.safe_name,
            stored_name=path.name,
            # Detected from the content: the client's Content-Type is only a claim.
            content_type=info.mime_type,
            size=info.size,
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
    if not 0 < document_id <= ID_MAX:
        return None
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
    # A page past the last is empty anyway; past ID_MAX its offset could overflow the
    # database's integers (a 500) instead.
    page = min(page, ID_MAX)
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
