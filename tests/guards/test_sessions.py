"""Session validation, unreadable cookies, timeouts, rotation, cookie settings, session_required."""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

import flask_login
import pytest
from flask import Blueprint, Flask, request, session, url_for
from flask.sessions import SecureCookieSessionInterface, SessionMixin

from flask_resilience import ConfigurationError, Resilience, ResilienceWarning, session_required
from flask_resilience.config import SETTING_NAMES
from flask_resilience.guards import guard_state, rotate_session, session_checks
from flask_resilience.guards.session_interface import SEEN, STARTED, GuardedSessionInterface
from tests.guards.helpers import (
    BROWSER,
    SECRET,
    Clock,
    app_with_users,
    cookie_deleted,
    log_in,
    problem,
    raw_signed_cookie,
    signed_cookie,
)
from tests.support.paths import DOCS

GUARDS_LOGGER = "flask_resilience.guards"


class LoginUser(flask_login.UserMixin):  # type: ignore[misc]
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def flask_login_app() -> tuple[Flask, flask_login.LoginManager]:
    """An app whose users come from Flask-Login (the extension has no current_user_loader)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    Resilience(app)
    manager = flask_login.LoginManager(app)
    manager.user_loader(lambda user_id: LoginUser(user_id) if user_id == "1" else None)
    return app, manager


def guarded_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.endswith(GUARDS_LOGGER)]


# -- Cookies that cannot be read ---------------------------------------------------------------


def test_tampered_cookie_is_dropped_and_logged_without_its_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = app_with_users()
    client = app.test_client()
    forged = signed_cookie(app, {"uid": 1, "secret_marker": "XYZZY"}, secret="guessed-key")
    client.set_cookie("session", forged)

    with caplog.at_level(logging.INFO):
        response = client.get("/whoami", headers={"X-Request-ID": "req-tampered"})

    assert response.status_code == 200
    assert response.get_json() == {}
    assert cookie_deleted(response)
    [record] = guarded_records(caplog)
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "req-tampered" in message
    assert "XYZZY" not in message and forged not in message


def test_cookie_that_cannot_be_decoded_gives_an_empty_session_not_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = app_with_users()
    client = app.test_client()
    # Correctly signed, but Flask's tagged serializer chokes on this "UUID".
    client.set_cookie("session", raw_signed_cookie({"uid": 1, "ref": {" u": "not-a-uuid"}}))

    with caplog.at_level(logging.WARNING):
        response = client.get("/whoami")

    assert response.status_code == 200
    assert response.get_json() == {}
    assert cookie_deleted(response)
    assert "BadPayload" in guarded_records(caplog)[0].getMessage()


def test_request_without_session_cookie_is_left_alone() -> None:
    app, _ = app_with_users(RESILIENCE_SESSION_IDLE_TIMEOUT=60)
    response = app.test_client().get("/login")
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.vary


@pytest.mark.parametrize("secret", [SECRET, None])
def test_a_request_without_cookies_opens_the_session_flask_would(secret: str | None) -> None:
    def opened_session(guarded: bool) -> list[Any]:
        opened: list[Any] = []
        app = Flask(__name__)
        app.config.update(SECRET_KEY=secret, TESTING=True)
        if guarded:
            Resilience(app)

        @app.get("/look")
        def look() -> str:
            opened.append((type(session), dict(session), session.new, session.modified))
            return "seen"

        assert app.test_client().get("/look").status_code == 200
        return opened

    assert opened_session(guarded=True) == opened_session(guarded=False)


def test_a_subclass_of_the_cookie_interface_opens_every_session_itself() -> None:
    calls: list[bool] = []

    class Counting(SecureCookieSessionInterface):
        def open_session(self, app: Flask, request: Any) -> Any:
            calls.append(bool(request.cookies))
            return super().open_session(app, request)

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    app.session_interface = Counting()
    Resilience(app)
    assert app.test_client().get("/").status_code == 404
    assert calls == [False]


def test_a_broken_session_interface_falls_back_to_the_null_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(SecureCookieSessionInterface):
        def open_session(self, app: Flask, request: Any) -> Any:
            raise RuntimeError("the session store is broken")

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    app.session_interface = Broken()
    Resilience(app)

    @app.get("/public")
    def public() -> str:
        return "public"

    with caplog.at_level(logging.WARNING):
        response = app.test_client().get("/public")
    assert response.status_code == 200
    assert "Opening a fresh session failed" in caplog.records[-1].getMessage()


def test_an_unreadable_cookie_without_a_secret_key_gets_the_null_session() -> None:
    class CookieHater(SecureCookieSessionInterface):
        def open_session(self, app: Flask, request: Any) -> Any:
            if request.cookies:
                raise ValueError("cannot read it")
            return super().open_session(app, request)  # None: there is no secret key

    app = Flask(__name__)
    app.config["TESTING"] = True
    app.session_interface = CookieHater()
    Resilience(app)

    @app.get("/public")
    def public() -> str:
        return "public"

    client = app.test_client()
    client.set_cookie("session", "anything")
    assert client.get("/public").status_code == 200


def test_the_wrapper_answers_as_the_wrapped_interface() -> None:
    class Custom(SecureCookieSessionInterface):
        salt = "custom-salt"

        def get_cookie_name(self, app: Flask) -> str:
            return "custom"

        def get_cookie_path(self, app: Flask) -> str:
            return "/app"

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, SESSION_COOKIE_SAMESITE="Lax")
    inner = Custom()
    app.session_interface = inner
    Resilience(app)
    wrapper = app.session_interface
    assert isinstance(wrapper, GuardedSessionInterface)
    assert wrapper.salt == "custom-salt"
    for method in (
        "get_cookie_name",
        "get_cookie_domain",
        "get_cookie_path",
        "get_cookie_httponly",
        "get_cookie_secure",
        "get_cookie_samesite",
        "get_cookie_partitioned",
        "make_null_session",
    ):
        assert repr(getattr(wrapper, method)(app)) == repr(getattr(inner, method)(app)), method
    sess = inner.session_class({"a": 1})
    sess.permanent = True
    assert wrapper.get_expiration_time(app, sess) is not None
    assert wrapper.should_set_cookie(app, sess) == inner.should_set_cookie(app, sess)
    assert wrapper.is_null_session(wrapper.make_null_session(app))

    @app.get("/set")
    def set_value() -> str:
        session["a"] = 1
        return "set"

    assert "custom=" in app.test_client().get("/set").headers["Set-Cookie"]
    assert copy.copy(wrapper).inner is inner


def test_an_interface_installed_after_init_is_guarded_from_the_next_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _ = app_with_users()
    app.session_interface = SecureCookieSessionInterface()
    client = app.test_client()
    with caplog.at_level(logging.INFO):
        client.get("/whoami")
    assert isinstance(app.session_interface, GuardedSessionInterface)
    assert "replaced after Resilience.init_app" in guarded_records(caplog)[0].getMessage()
    client.set_cookie("session", raw_signed_cookie({"ref": {" u": "not-a-uuid"}}))
    assert client.get("/whoami").status_code == 200


# -- Only what is turned on runs on each request ---------------------------------------------------


def extension_hooks(app: Flask) -> list[str]:
    """What the extension's first look runs before each request (see flask_resilience.pipeline).

    Once a request has been served, the first look (here with the gate, no other
    extension's hook coming between) is also checked to be the app's first
    before_request function, whenever it has something to run.
    """
    hooks = app.extensions["resilience"].path
    if hooks.settled and hooks.looks:
        assert app.before_request_funcs[None][0] == hooks.look_then_gate
    return [look.__qualname__ for look in hooks.looks]


def test_an_app_without_session_settings_runs_no_hook_of_the_extension() -> None:
    """A Flask hook costs several microseconds a request; session_checks nobody checks need none."""
    app, _ = app_with_users()  # a user loader and guards, but no schema, timeouts or validator
    assert extension_hooks(app) == []
    client = app.test_client()
    log_in(client, 1)
    assert client.get("/whoami").get_json() == {"uid": 1}
    client.set_cookie("session", signed_cookie(app, {"uid": 1}, secret="guessed-key"))
    assert client.get("/whoami").get_json() == {}
    assert extension_hooks(app) == []
    with client.session_transaction() as sess:
        assert STARTED not in sess  # no timeouts, no stamps


@pytest.mark.parametrize(
    "config",
    [
        {"RESILIENCE_SESSION_SCHEMA": {"uid": int}},
        {"RESILIENCE_SESSION_IDLE_TIMEOUT": 60},
        {"RESILIENCE_SESSION_ABSOLUTE_TIMEOUT": 60},
    ],
)
def test_configured_checks_run_before_the_apps_own_hooks(config: dict[str, Any]) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True, **config)
    seen: list[Any] = []
    app.before_request(lambda: seen.append(session.get("uid")))
    Resilience(app)
    assert extension_hooks(app) == ["check_session"]

    @app.get("/")
    def index() -> str:
        return "index"

    client = app.test_client()
    client.set_cookie("session", signed_cookie(app, {"uid": "1", "_resilience_started": "x"}))
    client.get("/")
    assert seen == [None]  # cleared by the checks before the app's hook read it
    client.set_cookie("session", signed_cookie(app, {"uid": 1}, secret="guessed-key"))
    client.get("/")
    assert seen == [None, None]


def test_a_validator_registered_after_init_is_checked_first_from_the_next_request() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    seen: list[Any] = []
    app.before_request(lambda: seen.append(session.get("uid")))
    resilience = Resilience(app)

    @app.get("/")
    def index() -> str:
        return "index"

    client = app.test_client()
    log_in(client, 1)
    client.get("/")
    assert extension_hooks(app) == []
    resilience.session_validator(lambda sess: sess.get("uid") == 2)
    client.get("/")
    client.get("/")
    assert seen == [1, None, None]
    assert extension_hooks(app) == ["check_session"]


def test_installing_the_checks_twice_leaves_one(caplog: pytest.LogCaptureFixture) -> None:
    """What two first requests at once may do: neither the hook nor the wrapper is doubled."""
    app, _ = app_with_users()
    state = app.extensions["resilience"]
    for _ in range(2):
        session_checks._install_checks(app, state, guard_state(app))
    assert extension_hooks(app) == ["check_session"]
    wrapper = app.session_interface
    with caplog.at_level(logging.INFO):
        session_checks._guard_replaced_interface(app, guard_state(app))
    assert app.session_interface is wrapper
    assert guarded_records(caplog) == []


# -- What the session holds ---------------------------------------------------------------------


def test_session_value_of_the_wrong_type_is_cleared(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = app_with_users(RESILIENCE_SESSION_SCHEMA={"uid": int, "org_id": (int, type(None))})
    client = app.test_client()
    log_in(client, 1, org_id="acme-corp")

    with caplog.at_level(logging.WARNING):
        response = client.get("/whoami")

    assert response.get_json() == {}
    message = guarded_records(caplog)[0].getMessage()
    assert "'org_id' holds str, expected int or NoneType" in message
    assert "acme-corp" not in message
    assert client.get("/whoami").get_json() == {}


def test_a_bool_is_not_an_int_to_the_schema() -> None:
    app, _ = app_with_users(RESILIENCE_SESSION_SCHEMA={"uid": int, "flag": bool})
    client = app.test_client()
    log_in(client, True)
    assert client.get("/whoami").get_json() == {}
    log_in(client, 1, flag=True)
    assert client.get("/whoami").get_json() == {"uid": 1, "flag": True}


def test_session_from_before_a_schema_change_is_cleared() -> None:
    """Version 1 kept the theme as a string; version 2 keeps a dict of preferences."""
    app, resilience = app_with_users(RESILIENCE_SESSION_SCHEMA={"prefs": dict})

    @resilience.session_validator
    def current_version(sess: SessionMixin) -> bool:
        return sess.get("version") == 2

    client = app.test_client()
    client.set_cookie("session", signed_cookie(app, {"uid": 1, "prefs": "dark"}))
    assert client.get("/whoami").get_json() == {}

    client.set_cookie("session", signed_cookie(app, {"uid": 1, "prefs": {}, "version": 1}))
    assert client.get("/whoami").get_json() == {}

    client.set_cookie("session", signed_cookie(app, {"uid": 1, "prefs": {}, "version": 2}))
    assert client.get("/whoami").get_json() == {"uid": 1, "prefs": {}, "version": 2}


@pytest.mark.parametrize("verdict", [False, None, 1, "yes"])
def test_validator_must_say_true_to_keep_the_session(verdict: Any) -> None:
    app, resilience = app_with_users()
    resilience.session_validator(lambda sess: verdict)
    client = app.test_client()
    log_in(client, 1)
    assert client.get("/whoami").get_json() == {}


def test_validator_that_raises_clears_the_session_and_the_user_is_anonymous(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, resilience = app_with_users()

    @resilience.session_validator
    def broken(sess: SessionMixin) -> bool:
        raise KeyError("tenant")

    @app.get("/api/docs")
    @session_required("uid")
    def docs() -> str:
        return "docs"

    client = app.test_client()
    log_in(client, 1)
    with caplog.at_level(logging.WARNING):
        response = client.get("/api/docs")
    assert response.status_code == 401
    [record] = guarded_records(caplog)
    assert "the session validator raised KeyError in broken (test_sessions.py:" in (
        record.getMessage()
    )
    assert "tenant" not in record.getMessage() and record.exc_info is None


def test_validator_clears_a_user_already_loaded_by_flask_login() -> None:
    """A validator may look at current_user; the cleared session must not keep that user."""
    app, _ = flask_login_app()

    def only_staff(sess: SessionMixin) -> bool:
        return bool(flask_login.current_user.is_authenticated and sess.get("staff"))

    guard_state(app).callbacks.session_validator = only_staff

    @app.get("/api/me")
    def me() -> dict[str, Any]:
        return {"authenticated": flask_login.current_user.is_authenticated}

    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = "1"
    assert client.get("/api/me").get_json() == {"authenticated": False}
    with client.session_transaction() as sess:
        sess["_user_id"] = "1"
        sess["staff"] = True
    assert client.get("/api/me").get_json() == {"authenticated": True}


# -- Timeouts ------------------------------------------------------------------------------------


def timed_app(**config: Any) -> tuple[Flask, Clock]:
    app, _ = app_with_users(RESILIENCE_LOGIN_VIEW="login", **config)
    clock = Clock()
    guard_state(app).time_source = clock

    @app.get("/start")
    def start() -> str:
        session["uid"] = 1
        return "started"

    @app.get("/api/ping")
    def ping() -> str:
        return "pong"

    @app.route("/api/preflight", methods=["GET", "OPTIONS"], provide_automatic_options=False)
    def preflight() -> str:
        return "preflight"

    return app, clock


def test_idle_timeout_expires_an_unused_session() -> None:
    app, clock = timed_app(RESILIENCE_SESSION_IDLE_TIMEOUT=60)
    client = app.test_client()
    client.get("/start")

    clock.advance(59)
    assert client.get("/whoami").get_json() == {"uid": 1}
    clock.advance(59)  # 118 s after the start, but only 59 s after the last use
    assert client.get("/whoami").get_json() == {"uid": 1}

    clock.advance(61)
    response = client.get("/api/ping")
    assert response.status_code == 401
    assert problem(response)["reason"] == "session-expired"
    assert cookie_deleted(response)
    assert client.get("/whoami").get_json() == {}


def test_absolute_timeout_expires_an_active_session() -> None:
    app, clock = timed_app(
        RESILIENCE_SESSION_IDLE_TIMEOUT=60, RESILIENCE_SESSION_ABSOLUTE_TIMEOUT=300
    )
    client = app.test_client()
    client.get("/start")
    for _ in range(6):  # 300 s of use, never idle
        clock.advance(50)
        assert client.get("/api/ping").status_code == 200

    clock.advance(1)
    response = client.get("/api/ping")
    assert response.status_code == 401
    assert problem(response)["reason"] == "session-expired"


def test_expired_browser_session_is_redirected_to_the_login_view() -> None:
    app, clock = timed_app(RESILIENCE_SESSION_ABSOLUTE_TIMEOUT=10)
    client = app.test_client()
    client.get("/start")
    clock.advance(11)
    response = client.get("/whoami?tab=2", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fwhoami%3Ftab%3D2"


def test_expired_session_on_login_view_and_preflight_goes_on_anonymous() -> None:
    app, clock = timed_app(RESILIENCE_SESSION_ABSOLUTE_TIMEOUT=10)
    client = app.test_client()
    client.get("/start")
    clock.advance(11)
    assert client.get("/login").status_code == 200
    assert client.get("/whoami").get_json() == {}

    client.get("/start")
    clock.advance(11)
    assert client.options("/api/preflight").status_code == 200


def test_expired_session_fetching_a_blueprint_static_file_goes_on(tmp_path: Any) -> None:
    (tmp_path / "site.css").write_text("body {}")
    app, clock = timed_app(RESILIENCE_SESSION_ABSOLUTE_TIMEOUT=10)
    app.register_blueprint(Blueprint("theme", __name__, static_folder=str(tmp_path)))
    client = app.test_client()
    client.get("/start")
    clock.advance(11)
    # The app's own static route: not found (it has no static folder), but not redirected.
    assert client.get("/static/site.css", headers=BROWSER).status_code == 404
    client.get("/start")
    clock.advance(11)
    with app.test_request_context():
        url = url_for("theme.static", filename="site.css")
    with client.get(url, headers=BROWSER) as response:
        assert response.status_code == 200


def test_session_written_before_timeouts_were_on_counts_from_now() -> None:
    app, clock = timed_app(RESILIENCE_SESSION_ABSOLUTE_TIMEOUT=100)
    client = app.test_client()
    client.set_cookie("session", signed_cookie(app, {"uid": 1}))
    assert client.get("/whoami").get_json() == {"uid": 1}
    clock.advance(99)
    assert client.get("/whoami").get_json() == {"uid": 1}
    clock.advance(2)
    assert client.get("/api/ping").status_code == 401


@pytest.mark.parametrize(
    "stamps",
    [{STARTED: "yesterday", SEEN: 1}, {STARTED: 1}, {STARTED: True, SEEN: True}],
)
def test_unreadable_timestamps_clear_the_session(stamps: dict[str, Any]) -> None:
    app, _ = timed_app(RESILIENCE_SESSION_IDLE_TIMEOUT=60)
    client = app.test_client()
    client.set_cookie("session", signed_cookie(app, {"uid": 1, **stamps}))
    response = client.get("/api/ping")
    assert response.status_code == 200
    assert cookie_deleted(response)


def test_a_session_emptied_by_the_app_loses_its_timestamps() -> None:
    app, _ = timed_app(RESILIENCE_SESSION_IDLE_TIMEOUT=60)

    @app.get("/logout")
    def logout() -> str:
        session.pop("uid")
        return "bye"

    client = app.test_client()
    client.get("/start")
    assert cookie_deleted(client.get("/logout"))


def test_the_clock_is_the_state_time_source() -> None:
    app, clock = timed_app(RESILIENCE_SESSION_IDLE_TIMEOUT=60)
    client = app.test_client()
    client.get("/start")
    with client.session_transaction() as sess:
        assert sess[STARTED] == sess[SEEN] == int(clock.now)
    clock.advance(30.5)
    client.get("/whoami")
    with client.session_transaction() as sess:
        assert sess[SEEN] == int(clock.now)
        assert sess[STARTED] == int(clock.now - 30.5)


# -- Rotation ------------------------------------------------------------------------------------


def test_rotation_drops_old_keys_and_keeps_what_is_asked() -> None:
    app, _ = timed_app(RESILIENCE_SESSION_IDLE_TIMEOUT=600)
    clock = guard_state(app).time_source
    assert isinstance(clock, Clock)

    @app.post("/login")
    def do_login() -> str:
        rotate_session(keep=["cart", "missing"])
        session["uid"] = 2
        return "welcome"

    client = app.test_client()
    client.set_cookie(
        "session",
        signed_cookie(app, {"uid": 1, "cart": ["book"], "planted": "by-attacker"}),
    )
    client.get("/whoami")
    clock.advance(100)
    old_cookie = client.get_cookie("session")
    client.post("/login")

    assert client.get("/whoami").get_json() == {"uid": 2, "cart": ["book"]}
    assert client.get_cookie("session") != old_cookie
    with client.session_transaction() as sess:
        assert sess[STARTED] == int(clock.now)


def test_rotation_asks_a_server_side_interface_for_a_new_id() -> None:
    regenerated: list[dict[str, Any]] = []

    class WithRegenerate(SecureCookieSessionInterface):
        def regenerate(self, current: SessionMixin) -> None:
            regenerated.append(dict(current))

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    app.session_interface = WithRegenerate()
    Resilience(app)

    @app.get("/rotate")
    def rotate() -> str:
        session["stale"] = 1
        rotate_session()
        return "ok"

    app.test_client().get("/rotate")
    assert regenerated == [{}]


def test_rotation_refuses_a_single_string() -> None:
    app, _ = app_with_users()
    with app.test_request_context(), pytest.raises(TypeError, match="list of keys"):
        rotate_session(keep="cart")


def test_rotation_forgets_the_flask_login_user_of_this_request() -> None:
    app, _ = flask_login_app()

    @app.get("/rotate")
    def rotate() -> dict[str, bool]:
        before = flask_login.current_user.is_authenticated
        rotate_session()
        return {"before": before, "after": flask_login.current_user.is_authenticated}

    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = "1"
    assert client.get("/rotate").get_json() == {"before": True, "after": False}


def test_rotation_may_keep_the_flask_login_user() -> None:
    app, _ = flask_login_app()

    @app.get("/rotate")
    def rotate() -> dict[str, bool]:
        assert flask_login.current_user.is_authenticated
        rotate_session(keep=["_user_id", "_fresh", "_id"])
        return {"after": flask_login.current_user.is_authenticated}

    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = "1"
        sess["stale"] = True
    assert client.get("/rotate").get_json() == {"after": True}
    with client.session_transaction() as sess:
        assert "stale" not in sess


# -- Cookie settings -----------------------------------------------------------------------------

SAFE = {
    "SECRET_KEY": SECRET,
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
}


def production_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({**SAFE, **config})
    return app


def init_warnings(app: Flask) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Resilience(app)
    return [str(w.message) for w in caught if issubclass(w.category, ResilienceWarning)]


def test_safe_cookie_settings_raise_no_warning() -> None:
    assert init_warnings(production_app()) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"SESSION_COOKIE_SECURE": False}, "SESSION_COOKIE_SECURE is False"),
        ({"SESSION_COOKIE_SAMESITE": None}, "SESSION_COOKIE_SAMESITE is not set"),
        ({"SESSION_COOKIE_HTTPONLY": False}, "SESSION_COOKIE_HTTPONLY is False"),
        ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "dev"}, "SECRET_KEY is a well-known default"),
        ({"SECRET_KEY": " Super Secret Key "}, "SECRET_KEY is a well-known default"),
        ({"SECRET_KEY": b'_5#y2L"F4Q8z\n\xec]/'}, "SECRET_KEY is a well-known default"),
        ({"SECRET_KEY": "k4Jx9-short"}, "SECRET_KEY is 11 characters long"),
    ],
)
def test_unsafe_cookie_settings_warn(config: dict[str, Any], expected: str) -> None:
    [message] = init_warnings(production_app(**config))
    assert message.startswith(expected)
    secret = config.get("SECRET_KEY")
    assert not isinstance(secret, str) or secret.strip() not in message


def test_warnings_point_at_the_callers_init_line() -> None:
    for init in (Resilience, lambda app: Resilience().init_app(app)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            init(production_app(SESSION_COOKIE_SECURE=False))
        assert caught[0].filename == __file__


def test_strict_mode_refuses_unsafe_cookie_settings() -> None:
    app = production_app(
        SESSION_COOKIE_SECURE=False, SECRET_KEY="dev", RESILIENCE_SESSION_STRICT=True
    )
    with pytest.raises(ConfigurationError) as raised:
        Resilience(app)
    assert "SESSION_COOKIE_SECURE is False" in str(raised.value)
    assert "SECRET_KEY is a well-known default" in str(raised.value)
    assert "resilience" not in app.extensions


@pytest.mark.parametrize("mode", ["DEBUG", "TESTING"])
def test_debug_and_testing_apps_are_not_warned(mode: str) -> None:
    app = production_app(SESSION_COOKIE_SECURE=False, RESILIENCE_SESSION_STRICT=True)
    app.config[mode] = True
    assert init_warnings(app) == []


# -- Configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RESILIENCE_SESSION_IDLE_TIMEOUT", 0),
        ("RESILIENCE_SESSION_IDLE_TIMEOUT", "60"),
        ("RESILIENCE_SESSION_ABSOLUTE_TIMEOUT", True),
        ("RESILIENCE_SESSION_ABSOLUTE_TIMEOUT", float("inf")),
        ("RESILIENCE_SESSION_SCHEMA", ["uid"]),
        ("RESILIENCE_SESSION_SCHEMA", {"uid": "int"}),
        ("RESILIENCE_SESSION_SCHEMA", {"uid": ()}),
        ("RESILIENCE_SESSION_SCHEMA", {1: int}),
        ("RESILIENCE_SESSION_STRICT", "yes"),
        ("RESILIENCE_LOGIN_VIEW", ""),
        ("RESILIENCE_ORG_ID_SOURCE", "header"),
    ],
)
def test_wrong_settings_are_refused_at_init(key: str, value: Any) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=key):
        Resilience(app)


# -- session_required ----------------------------------------------------------------------------


def required_app() -> Flask:
    app, _ = app_with_users(
        RESILIENCE_LOGIN_VIEW="login", RESILIENCE_SESSION_SCHEMA={"org_id": int}
    )

    @app.route("/api/org", methods=["GET", "OPTIONS"], provide_automatic_options=False)
    @session_required("uid", "org_id")
    def org() -> str:
        return "org"

    @app.get("/org")
    @session_required("org_id")
    def org_page() -> str:
        return "org page"

    return app


def test_session_required_answers_401_problem_for_api_clients() -> None:
    client = required_app().test_client()
    log_in(client, 1)
    response = client.get("/api/org")
    assert response.status_code == 401
    body = problem(response)
    assert body["reason"] == "session-required"
    assert "org_id" in body["detail"]


def test_session_required_redirects_browsers() -> None:
    client = required_app().test_client()
    response = client.get("/org", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_session_required_passes_with_the_keys_and_for_preflight() -> None:
    client = required_app().test_client()
    assert client.options("/api/org").status_code == 200
    log_in(client, 1, org_id=10)
    assert client.get("/api/org").get_data(as_text=True) == "org"


def test_session_required_refuses_a_none_value() -> None:
    client = required_app().test_client()
    log_in(client, 1, org_id=None)
    assert client.get("/api/org").status_code == 401


def test_session_required_checks_the_schema_type_too() -> None:
    """A value written during the request, after the session was checked, is checked again."""
    app = required_app()

    @app.before_request
    def org_from_query() -> None:
        if "org" in request.args:
            session["org_id"] = request.args["org"]  # a str, where the schema wants an int

    client = app.test_client()
    log_in(client, 1, org_id=10)
    assert client.get("/api/org").status_code == 200
    assert client.get("/api/org?org=10").status_code == 401


@pytest.mark.parametrize("keys", [(), ("",), (3,), (["uid"],)])
def test_session_required_refuses_empty_or_odd_keys(keys: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError):
        session_required(*keys)


def test_every_guard_setting_is_documented() -> None:
    reference = (DOCS / "configuration.md").read_text()
    for key in (
        "RESILIENCE_SESSION_SCHEMA",
        "RESILIENCE_SESSION_IDLE_TIMEOUT",
        "RESILIENCE_SESSION_ABSOLUTE_TIMEOUT",
        "RESILIENCE_SESSION_STRICT",
        "RESILIENCE_LOGIN_VIEW",
        "RESILIENCE_ORG_ID_SOURCE",
    ):
        assert key in SETTING_NAMES
        assert f"| `{key}` |" in reference, key
