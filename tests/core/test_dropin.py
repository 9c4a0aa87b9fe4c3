"""Adding the extension to a working app changes only what the README's table lists.

Each test builds an app the way apps are written without the extension in mind,
adds ``Resilience(app, ...)``, and checks that what the app relied on still holds:
its error handlers, its sessions and app contexts, its hooks, its routes and its
requests; and that every key of the table turns its change off.
"""

from __future__ import annotations

import gc
import signal
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Blueprint, Flask, abort, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.exceptions import HTTPException, NotFound

from flask_resilience import Resilience, ResilienceWarning, lifecycle


class Base(sa.orm.DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


@pytest.fixture
def sqlite_app(make_app: Callable[..., Flask], tmp_path: Any) -> Iterator[tuple[Flask, Any]]:
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'shop.db'}")
    db = SQLAlchemy(app, model_class=Base)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return str(db.get_or_404(Item, item_id).name)

    with app.app_context():
        db.create_all()
    yield app, db


# -- The app's error handlers win ---------------------------------------------------------------


HANDLERS: dict[str, Callable[[Flask], None]] = {
    "code": lambda app: app.register_error_handler(404, lambda e: ("own 404", 404)),
    "class": lambda app: app.register_error_handler(NotFound, lambda e: ("own 404", 404)),
    "HTTPException": lambda app: app.register_error_handler(
        HTTPException, lambda e: (f"own {e.code}", e.code or 500)
    ),
    "Exception": lambda app: app.register_error_handler(
        Exception, lambda e: (f"own {getattr(e, 'code', 500)}", getattr(e, "code", 500))
    ),
}


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("kind", sorted(HANDLERS))
def test_the_apps_error_handler_wins_registered_before_or_after(
    make_app: Callable[..., Flask], kind: str, when: str
) -> None:
    app = make_app()
    if when == "before":
        HANDLERS[kind](app)
    Resilience(app)
    if when == "after":
        HANDLERS[kind](app)
    response = app.test_client().get("/nowhere")
    assert response.status_code == 404
    assert response.get_data(as_text=True) == "own 404"


def test_an_exception_handler_of_the_app_still_sees_unhandled_crashes(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    seen: list[BaseException] = []

    @app.errorhandler(Exception)
    def everything(error: Exception) -> tuple[str, int]:
        seen.append(error)
        return "own page", 500

    @app.get("/boom")
    def boom() -> str:
        raise KeyError("boom")

    Resilience(app)
    response = app.test_client().get("/boom")
    assert (response.status_code, response.get_data(as_text=True)) == (500, "own page")
    assert [type(error) for error in seen] == [KeyError]


def test_a_blueprints_handler_wins_inside_it_and_the_extension_answers_elsewhere(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    api = Blueprint("api", __name__, url_prefix="/api")

    @api.errorhandler(HTTPException)
    def api_error(error: HTTPException) -> tuple[Any, int]:
        return jsonify(error=error.name), error.code or 500

    @api.get("/gone")
    def gone() -> str:
        abort(410)

    app.register_blueprint(api)
    Resilience(app)
    client = app.test_client()
    assert client.get("/api/gone").get_json() == {"error": "Gone"}
    assert client.get("/elsewhere").mimetype == "application/problem+json"


def test_error_format_off_leaves_flasks_own_pages(make_app: Callable[..., Flask]) -> None:
    app = make_app(RESILIENCE_ERROR_FORMAT="off")
    Resilience(app)
    response = app.test_client().get("/nowhere")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "<title>404 Not Found</title>" in response.get_data(as_text=True)


# -- Sessions and app contexts keep their lifetimes ---------------------------------------------


def test_objects_of_a_long_lived_context_stay_attached_after_a_request(
    sqlite_app: tuple[Flask, Any],
) -> None:
    app, db = sqlite_app
    Resilience(app, db=db)
    client = app.test_client()
    with app.test_request_context():
        db.session.add(Item(id=1, name="lamp"))
        db.session.commit()
        lamp = db.session.get(Item, 1)
        pending = Item(id=2, name="not committed")
        db.session.add(pending)
        assert client.get("/items/1").get_data(as_text=True) == "lamp"
        assert client.get("/items/99").status_code == 404  # an error on the way
        assert lamp.name == "lamp"  # attached: no DetachedInstanceError
        assert pending in db.session  # nothing the test had pending was thrown away
        assert sa.inspect(lamp).session is db.session()


def test_a_test_request_context_has_no_deadline(sqlite_app: tuple[Flask, Any]) -> None:
    app, db = sqlite_app
    app.config["RESILIENCE_REQUEST_TIMEOUT"] = 0.05
    Resilience(app, db=db)
    with app.test_request_context():
        db.session.execute(sa.text("SELECT 1"))
        time.sleep(0.1)
        db.session.commit()
        db.session.execute(sa.text("SELECT 1"))  # would be refused if a deadline ran


def test_sqlite_is_never_refused_for_want_of_time(sqlite_app: tuple[Flask, Any]) -> None:
    app, db = sqlite_app
    app.config["RESILIENCE_REQUEST_TIMEOUT"] = 0.05

    @app.get("/late")
    def late() -> str:
        time.sleep(0.1)
        return str(db.session.execute(sa.text("SELECT 2")).scalar())

    Resilience(app, db=db)
    response = app.test_client().get("/late")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "2")


def test_a_bug_in_sql_on_sqlite_is_a_500_not_an_outage(sqlite_app: tuple[Flask, Any]) -> None:
    app, db = sqlite_app

    @app.get("/broken")
    def broken() -> str:
        return str(db.session.execute(sa.text("SELECT count(*) FROM no_such_table")).scalar())

    Resilience(app, db=db)
    response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize("rollback", [True, False])
@pytest.mark.parametrize("where", ["view", "after the view"])
def test_the_rollback_after_a_database_error_can_be_turned_off(
    sqlite_app: tuple[Flask, Any], rollback: bool, where: str
) -> None:
    app, db = sqlite_app
    app.config["RESILIENCE_ROLLBACK_ON_ERROR"] = rollback
    states: list[bool] = []

    def insert_twice() -> None:
        db.session.add_all([Item(id=7, name="a"), Item(id=7, name="b")])
        db.session.flush()

    @app.get("/duplicate")
    def duplicate() -> str:
        if where == "view":
            insert_twice()
        return "done"

    @app.after_request
    def write_audit_row(response: Any) -> Any:
        if where == "after the view":  # an error raised here skips handle_user_exception
            insert_twice()
        return response

    @app.errorhandler(sa.exc.IntegrityError)
    def conflict(error: Exception) -> tuple[str, int]:
        states.append(db.session.is_active)
        return "conflict", 409

    @app.errorhandler(500)  # what an error raised after the view reaches
    def internal_error(error: Exception) -> tuple[str, int]:
        states.append(db.session.is_active)
        return "failed", 500

    Resilience(app, db=db)
    assert app.test_client().get("/duplicate").status_code == (409 if where == "view" else 500)
    # Rolled back: the handler finds a usable session; left alone: the failed one.
    assert states == [rollback]


def test_an_app_and_its_database_nobody_holds_are_collected(tmp_path: Path) -> None:
    # Made here: the make_app fixture holds its apps until the test ends.
    app = Flask("throwaway", instance_path=str(tmp_path))
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'app.db'}"
    app.config["RESILIENCE_MONITOR_ENABLED"] = False
    db = SQLAlchemy(app)
    Resilience(app, db=db)
    assert app.test_client().get("/").status_code == 404
    collected: list[weakref.ref[Any]] = [weakref.ref(app), weakref.ref(db)]
    del app, db
    gc.collect()
    assert [ref() for ref in collected] == [None, None]


# -- Hooks, routes and limits -------------------------------------------------------------------


def test_the_apps_hooks_keep_their_order_without_anything_to_gate(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(RATELIMIT_ENABLED=False)
    first, second = (lambda: None), (lambda: None)
    app.before_request(first)
    Resilience(app)
    app.before_request(second)
    app.test_client().get("/")
    assert app.before_request_funcs[None] == [first, second]


def test_an_apps_own_health_route_wins(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    Resilience(app)  # before the app's routes, as extensions are set up

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/health/live")
    def live() -> str:
        return "own liveness"

    client = app.test_client()
    assert client.get("/health").get_json() == {"ok": "yes"}
    assert client.get("/health/live").get_data(as_text=True) == "own liveness"
    assert client.get("/health/ready").status_code == 200  # the rest is still mounted


def test_a_polling_client_is_never_refused_without_a_configured_limit(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()

    @app.get("/api/status")
    def status() -> str:
        return "fine"

    Resilience(app)
    client = app.test_client()
    assert {client.get("/api/status").status_code for _ in range(250)} == {200}


# -- Every change of the table turns off --------------------------------------------------------


def test_body_limits_off_leaves_flasks_limits(make_app: Callable[..., Flask]) -> None:
    app = make_app(RESILIENCE_BODY_LIMITS=False)
    Resilience(app)
    assert app.config["MAX_CONTENT_LENGTH"] is None
    on = make_app()
    Resilience(on)
    assert on.config["MAX_CONTENT_LENGTH"] == 50 * 1024 * 1024


def test_no_request_id_header_is_read_or_sent_when_turned_off(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(RESILIENCE_REQUEST_ID_HEADER=None)
    Resilience(app)
    response = app.test_client().get("/nowhere", headers={"X-Request-ID": "from-client"})
    assert "X-Request-ID" not in response.headers
    assert response.get_json()["request_id"] != "from-client"


def test_a_request_id_header_of_another_name(make_app: Callable[..., Flask]) -> None:
    app = make_app(RESILIENCE_REQUEST_ID_HEADER="X-Correlation-ID")
    Resilience(app)
    response = app.test_client().get("/nowhere", headers={"X-Correlation-ID": "corr-1"})
    assert response.headers["X-Correlation-ID"] == "corr-1"
    assert "X-Request-ID" not in response.headers


def test_the_session_interface_is_left_alone_when_the_guard_is_off(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(RESILIENCE_SESSION_GUARD=False)
    interface = app.session_interface
    Resilience(app)
    app.test_client().get("/")
    assert app.session_interface is interface


def test_sigterm_is_left_alone_under_testing_or_when_turned_off(
    make_app: Callable[..., Flask],
) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        Resilience(make_app(TESTING=True))
        Resilience(make_app(RESILIENCE_HANDLE_SIGTERM=False))
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        Resilience(make_app())
        assert signal.getsignal(signal.SIGTERM) is lifecycle._on_sigterm
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- Advice once --------------------------------------------------------------------------------


@pytest.mark.parametrize("validate", [False, True])
def test_each_advice_is_given_once(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture, validate: bool
) -> None:
    app = make_app(
        SESSION_COOKIE_SAMESITE="Lax",
        RESILIENCE_VALIDATE_ON_STARTUP=validate,
        RATELIMIT_APPLICATION="100 per minute",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Resilience(app)
    said = [str(w.message) for w in caught if issubclass(w.category, ResilienceWarning)]
    said += [record.getMessage() for record in caplog.records]
    assert len([text for text in said if "SESSION_COOKIE_SECURE" in text]) == 1, said
