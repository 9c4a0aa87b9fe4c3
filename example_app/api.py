"""The JSON API under ``/api``: every route needs a user and sees only their organization.

Each route names the permission it needs (see ``permissions.py``); the extension's
guards answer 403 problem+json, with a ``reason`` member, when the user lacks it.
Errors are raised as HTTP exceptions; flask_resilience answers them as
problem+json documents (RFC 9457), with the same shape on every route.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, abort, current_app, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from werkzeug.exceptions import BadGateway

from flask_resilience import (
    ProblemError,
    bulkhead,
    org_access_required,
    permission_required,
    request_timeout,
    validate_uploads,
)
from flask_resilience.uploads import send_upload, upload_checks

from .auth import current_account, limit_basic_auth_failures
from .documents import (
    DOCUMENT_UPLOADS,
    UploadError,
    get_document,
    organization_folder,
    paginate_documents,
    store_document,
)
from .models import Document
from .outbound import OutboundError, fetch_guarded
from .stats import organization_stats

bp = Blueprint("api", __name__, url_prefix="/api")
limit_basic_auth_failures(bp)

# Every view that reads the documents table takes a slot of this one bulkhead: while
# the table is slow, those views answer 503 once its slots are taken, and the
# worker's other threads stay free (RESILIENCE_BULKHEAD_MAX_CONCURRENT in config.py).
# A call waits a quarter of a second for a slot first: a burst of fast reads is
# served, not refused.
documents_bulkhead = bulkhead(name="documents", max_wait=0.25)


@bp.before_request
@login_required
def require_login() -> None:
    """Every API route needs a user; a per-route decorator is one to forget."""


class OutboundFailed(ProblemError, BadGateway):
    """The outbound service failed; ``url`` and ``upstream_status`` say where and how."""


def document_json(document: Document) -> dict[str, Any]:
    return {
        **document.to_dict(),
        "url": url_for("api.document_detail", doc_id=document.id),
        "download_url": url_for("api.download_document", doc_id=document.id),
    }


def document_page(organization_id: int) -> dict[str, Any]:
    page = paginate_documents(
        organization_id,
        page=request.args.get("page", 1, type=int),
        per_page=request.args.get("per_page", type=int),
    )

    def link(number: int | None) -> str | None:
        if number is None:
            return None
        assert request.endpoint is not None
        view_args = request.view_args or {}
        return url_for(request.endpoint, **view_args, page=number, per_page=page.per_page)

    return {
        "items": [document_json(document) for document in page.items],
        "page": page.page,
        "per_page": page.per_page,
        "pages": page.pages,
        "total": page.total,
        "next": link(page.next_num),
        "prev": link(page.prev_num),
    }


def own_document(doc_id: int) -> Document:
    # Another organization's document is reported missing, not forbidden, so
    # that probing ids does not reveal which ones exist.
    document = get_document(current_account().organization_id, doc_id)
    if document is None:
        abort(404, description=f"There is no document {doc_id}.")
    return document


@bp.get("/me")
def me() -> ResponseReturnValue:
    return current_account().to_dict()


@bp.get("/documents")
@permission_required("documents:read")
@documents_bulkhead
def list_documents() -> ResponseReturnValue:
    return document_page(current_account().organization_id)


@bp.post("/documents")
# Above @validate_uploads: a viewer is refused before the file is looked at, learns
# nothing about it, and costs the server nothing.
@permission_required("documents:write")
@validate_uploads("file", policy=DOCUMENT_UPLOADS, max_files=1)
@documents_bulkhead
def upload_document() -> ResponseReturnValue:
    # A refused file never gets here: the decorator answers 400, 413 or 415 with
    # problem+json naming the reason.
    [check] = upload_checks("file")
    try:
        document = store_document(current_account(), check, request.form.get("title"))
    except UploadError as error:  # the title
        abort(400, description=str(error))
    body = document_json(document)
    return body, 201, {"Location": body["url"]}


@bp.get("/documents/<int:doc_id>")
@permission_required("documents:read")
@documents_bulkhead
def document_detail(doc_id: int) -> ResponseReturnValue:
    return document_json(own_document(doc_id))


@bp.get("/documents/<int:doc_id>/download")
@permission_required("documents:read")
@documents_bulkhead
def download_document(doc_id: int) -> ResponseReturnValue:
    document = own_document(doc_id)
    # An attachment the browser will not sniff; a 404 if the file has gone from the disk.
    return send_upload(
        document.stored_name,
        directory=organization_folder(document.organization_id),
        download_name=document.original_filename,
        mimetype=document.content_type,
    )


@bp.get("/orgs/<int:org_id>/documents")
@permission_required("documents:read")
# The organization is in the address, so asking for another one is a 403, not a 404:
# it reveals nothing the caller could not guess. Single documents stay 404 (own_document).
@org_access_required(org_id_arg="org_id")
@documents_bulkhead
def organization_documents(org_id: int) -> ResponseReturnValue:
    return document_page(org_id)


@bp.get("/stats")
@permission_required("stats:read")
@request_timeout(10)  # aggregates: a statement still running after 10 s is cancelled (504)
@documents_bulkhead
def stats() -> ResponseReturnValue:
    return organization_stats(current_account().organization_id)


@bp.get("/outbound")
def outbound() -> ResponseReturnValue:
    config = current_app.config
    try:
        response = fetch_guarded(config["OUTBOUND_URL"], timeout=config["OUTBOUND_TIMEOUT"])
    except OutboundError as error:
        raise OutboundFailed(
            f"The outbound service {error}.",
            url=config["OUTBOUND_URL"],
            upstream_status=error.upstream_status,
        ) from error
    return dataclasses.asdict(response)
