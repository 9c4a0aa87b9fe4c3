"""The app's own error pages; the API's paths get the API's JSON shape instead."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import InternalServerError, NotFound

from .api import error_body
from .extensions import db


def _is_api() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def page_not_found(error: NotFound) -> ResponseReturnValue:
    if _is_api():
        return jsonify(error_body("not_found", "There is nothing at this address.")), 404
    return render_template("errors/404.html"), 404


def internal_error(error: InternalServerError) -> ResponseReturnValue:
    # The failed request may have left the session in a broken transaction, and the
    # page below queries (the navigation shows the current user).
    db.session.rollback()
    if _is_api():
        return jsonify(error_body("internal_error", "Something went wrong on our side.")), 500
    return render_template("errors/500.html"), 500


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(404, page_not_found)
    app.register_error_handler(500, internal_error)
