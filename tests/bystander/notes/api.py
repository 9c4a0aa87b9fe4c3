"""The JSON API, for the mobile client: notes of the logged-in user.

Errors are JSON in one shape, ``{"error": {"code": ..., "message": ...}}``, from the
blueprint's own handlers.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from .extensions import db
from .models import Note

bp = Blueprint("api", __name__, url_prefix="/api")
logger = logging.getLogger(__name__)

TITLE_MAX = 120
BODY_MAX = 5000


class ApiError(Exception):
    """An error the API answers in its own JSON shape."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotAuthenticated(ApiError):
    status = 401
    code = "not_authenticated"


class NoteNotFound(ApiError):
    status = 404
    code = "note_not_found"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **details}}


@bp.errorhandler(ApiError)
def handle_api_error(error: ApiError) -> ResponseReturnValue:
    return jsonify(error_body(error.code, error.message, **error.details)), error.status


@bp.errorhandler(HTTPException)
def handle_http_error(error: HTTPException) -> ResponseReturnValue:
    code = (error.name or "error").lower().replace(" ", "_")
    return jsonify(error_body(code, error.description or "")), error.code or 500


@bp.before_request
def require_login() -> None:
    if not current_user.is_authenticated:
        raise NotAuthenticated("Log in to use the API.")


def _own_note(note_id: int) -> Note:
    note = db.session.get(Note, note_id)
    if note is None or note.author_id != current_user.id:
        # Someone else's note is "not found" too: the API does not confirm it exists.
        raise NoteNotFound(f"There is no note {note_id}.", note_id=note_id)
    return note


def _validated(payload: Any, *, partial: bool) -> dict[str, str]:
    """The note fields of a JSON body, or ValidationFailed naming every bad field."""
    if not isinstance(payload, dict):
        raise ValidationFailed("The body must be a JSON object.")
    fields: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name, limit, required in (("title", TITLE_MAX, True), ("body", BODY_MAX, False)):
        if name not in payload:
            if required and not partial:
                problems[name] = "This field is required."
            continue
        value = payload[name]
        if not isinstance(value, str):
            problems[name] = "Must be a string."
        elif required and not value.strip():
            problems[name] = "Must not be blank."
        elif len(value) > limit:
            problems[name] = f"At most {limit} characters."
        else:
            fields[name] = value.strip() if name == "title" else value
    if problems:
        raise ValidationFailed("Some fields are not valid.", fields=problems)
    return fields


@bp.get("/notes")
def list_notes() -> ResponseReturnValue:
    notes = db.session.scalars(
        select(Note).where(Note.author_id == current_user.id).order_by(Note.id)
    ).all()
    return {"notes": [note.to_dict() for note in notes], "count": len(notes)}


@bp.post("/notes")
def create_note() -> ResponseReturnValue:
    fields = _validated(request.get_json(), partial=False)
    note = Note(title=fields["title"], body=fields.get("body", ""), author_id=current_user.id)
    db.session.add(note)
    db.session.commit()
    logger.info("Note %s created through the API by user %s", note.id, current_user.id)
    location = url_for("api.get_note", note_id=note.id)
    return note.to_dict(), 201, {"Location": location}


@bp.get("/notes/<int:note_id>")
def get_note(note_id: int) -> ResponseReturnValue:
    return _own_note(note_id).to_dict()


@bp.patch("/notes/<int:note_id>")
def update_note(note_id: int) -> ResponseReturnValue:
    note = _own_note(note_id)
    for name, value in _validated(request.get_json(), partial=True).items():
        setattr(note, name, value)
    db.session.commit()
    return note.to_dict()


@bp.delete("/notes/<int:note_id>")
def delete_note(note_id: int) -> ResponseReturnValue:
    note = _own_note(note_id)
    db.session.delete(note)
    db.session.commit()
    # An audit line: structured fields for the log shipper, a sentence for people.
    logger.info(
        "Note %s deleted by user %s",
        note_id,
        current_user.id,
        extra={"user_id": current_user.id, "note_id": note_id},
    )
    return "", 204
