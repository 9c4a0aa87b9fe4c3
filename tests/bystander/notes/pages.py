"""The HTML pages: the note list, a note, the note form and the profile."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from sqlalchemy import select, text

from .extensions import db
from .forms import NoteForm
from .models import Note

bp = Blueprint("notes", __name__)
logger = logging.getLogger(__name__)


def _own_note_or_404(note_id: int) -> Note:
    note = db.get_or_404(Note, note_id)
    if note.author_id != current_user.id:
        abort(403)
    return note


@bp.route("/")
def index() -> ResponseReturnValue:
    notes: list[Note] = []
    if current_user.is_authenticated:
        notes = list(
            db.session.scalars(
                select(Note).where(Note.author_id == current_user.id).order_by(Note.id.desc())
            )
        )
    return render_template("notes/index.html", notes=notes)


@bp.route("/notes/new", methods=["GET", "POST"])
@login_required
def new_note() -> ResponseReturnValue:
    form = NoteForm()
    if form.validate_on_submit():
        note = Note(title=form.title.data.strip(), body=form.body.data or "", author=current_user)
        db.session.add(note)
        db.session.commit()
        logger.info("Note %s created by user %s", note.id, current_user.id)
        flash("Note saved.", "success")
        return redirect(url_for("notes.show_note", note_id=note.id))
    return render_template("notes/form.html", form=form, heading="New note")


@bp.route("/notes/<int:note_id>")
@login_required
def show_note(note_id: int) -> ResponseReturnValue:
    return render_template("notes/show.html", note=_own_note_or_404(note_id))


@bp.route("/notes/<int:note_id>/edit", methods=["GET", "POST"])
@login_required
def edit_note(note_id: int) -> ResponseReturnValue:
    note = _own_note_or_404(note_id)
    form = NoteForm(obj=note)
    if form.validate_on_submit():
        form.populate_obj(note)
        db.session.commit()
        flash("Note updated.", "success")
        return redirect(url_for("notes.show_note", note_id=note.id))
    return render_template("notes/form.html", form=form, heading="Edit note")


@bp.route("/profile")
@login_required
def profile() -> ResponseReturnValue:
    return render_template("notes/profile.html", user=current_user)


@bp.route("/health")
def health() -> ResponseReturnValue:
    """For the load balancer: the app answers and its database does too."""
    db.session.execute(text("SELECT 1"))
    return {"status": "ok"}


@bp.route("/boom")
def boom() -> ResponseReturnValue:
    """Fails on purpose, to check the error page and the error log end to end."""
    raise RuntimeError("Boom: this page fails on purpose.")


@bp.route("/broken-query")
def broken_query() -> ResponseReturnValue:
    """Fails on purpose with a SQL error: a query of a table that does not exist."""
    rows = db.session.execute(text("SELECT * FROM no_such_table")).all()
    return {"rows": len(rows)}
