"""The HTML pages: the organization's document list with an upload form."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from flask_resilience import permission_required
from flask_resilience.uploads import check_upload

from .auth import current_account
from .documents import DOCUMENT_UPLOADS, UploadError, paginate_documents, store_document
from .security import check_csrf

bp = Blueprint("pages", __name__)
bp.before_request(check_csrf)

_SIZE_UNITS = ("bytes", "KB", "MB", "GB")


@bp.app_template_filter("filesize")
def filesize(size: int) -> str:
    value = float(size)
    for unit in _SIZE_UNITS[:-1]:
        if value < 1024:
            return f"{size} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_SIZE_UNITS[-1]}"


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("pages.documents"))


@bp.get("/documents")
@login_required
@permission_required("documents:read")
def documents() -> ResponseReturnValue:
    user = current_account()
    page = paginate_documents(
        user.organization_id, page=request.args.get("page", 1, type=int), per_page=None
    )
    return render_template("documents.html", user=user, page=page)


@bp.post("/documents")
@login_required
@permission_required("documents:write")
def upload() -> ResponseReturnValue:
    # Checked here rather than by @validate_uploads: a browser is better served by a
    # message on the page it came from than by a problem document.
    check = check_upload(request.files.get("file"), policy=DOCUMENT_UPLOADS)
    try:
        document = store_document(current_account(), check, request.form.get("title"))
    except UploadError as error:
        flash(str(error), "error")
    else:
        flash(f"Uploaded “{document.title}”.", "success")
    # Post/Redirect/Get: reloading the list must not upload the file again.
    return redirect(url_for("pages.documents"))
