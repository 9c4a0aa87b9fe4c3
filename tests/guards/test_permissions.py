"""Permission, role and organization guards: who gets 401, 403, a redirect, or the view."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import flask_login
import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from flask_resilience import (
    ConfigurationError,
    PermissionDenied,
    Resilience,
    authentication_required,
    org_access_required,
    permission_required,
    role_required,
)
from flask_resilience.guards import access_refused, guard_state
from tests.guards.helpers import API, BROWSER, SECRET, USERS, User, app_with_users, log_in, problem

GUARDS_LOGGER = "flask_resilience.guards"

pytestmark = pytest.mark.config(RESILIENCE_LOGIN_VIEW="login")


def guarded_app(**config: Any) -> tuple[Flask, Resilience]:
    """An app whose guards know the test users, with the guarded views below."""
    app, resilience = app_with_users(**config)
    add_guarded_views(app)
    return app, resilience


def add_guarded_views(app: Flask) -> None:
    @app.route("/api/docs", methods=["GET", "POST", "OPTIONS"], provide_automatic_options=False)
    @permission_required("documents:write")
    def write_docs() -> str:
        return "written"

    @app.get("/docs")
    @permission_required("documents:write")
    def docs_page() -> str:
        return "docs page"

    @app.post("/docs")
    @permission_required("documents:write")
    def post_docs_page() -> str:
        return "posted"

    @app.get("/api/any")
    @permission_required("billing:read", "documents:read", any_of=True)
    def any_doc() -> str:
        return "any"

    @app.get("/api/both")
    @permission_required("billing:read", "documents:read")
    def both() -> str:
        return "both"

    @app.get("/api/admin")
    @role_required("admin")
    def admin() -> str:
        return "admin"

    @app.get("/api/staff")
    @role_required("admin", "editor", any_of=True)
    def staff() -> str:
        return "staff"

    @app.get("/api/orgs/<int:org_id>")
    @org_access_required()
    def org(org_id: int) -> dict[str, int]:
        return {"org": org_id}

    @app.get("/api/current-org")
    @org_access_required("current_org", source="session")
    def current_org() -> str:
        return "current org"

    @app.get("/api/report")
    @org_access_required("org", source="query")
    def report() -> str:
        return "report"

    @app.get("/api/me")
    @authentication_required
    def me() -> str:
        return "me"


@pytest.fixture
def app(app: Flask) -> Flask:
    add_guarded_views(app)
    return app


@pytest.fixture
def denials() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receive(sender: Flask, **details: Any) -> None:
        received.append(details)

    access_refused.connect(receive)
    yield received
    access_refused.disconnect(receive)


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- Not authenticated ----------------------------------------------------------------------------


def test_anonymous_api_client_gets_401_problem(client: FlaskClient) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 401
    body = problem(response)
    assert body["status"] == 401
    assert body["reason"] == "login-required"


def test_anonymous_browser_is_redirected_to_the_login_view(client: FlaskClient) -> None:
    response = client.get("/docs?page=2", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fdocs%3Fpage%3D2"


def test_anonymous_browser_post_is_redirected_with_see_other(client: FlaskClient) -> None:
    response = client.post("/docs", headers=BROWSER)
    assert response.status_code == 303


def test_browser_under_an_api_prefix_gets_401_not_a_redirect(client: FlaskClient) -> None:
    response = client.get("/api/docs", headers=BROWSER)
    assert response.status_code == 401
    assert problem(response)["reason"] == "login-required"


def test_browser_without_a_login_view_gets_a_401_page() -> None:
    app, _ = guarded_app()
    response = app.test_client().get("/docs", headers=BROWSER)
    assert response.status_code == 401
    assert response.mimetype == "text/html"


def test_json_error_format_never_redirects() -> None:
    app, _ = guarded_app(RESILIENCE_LOGIN_VIEW="login", RESILIENCE_ERROR_FORMAT="json")
    response = app.test_client().get("/docs", headers=BROWSER)
    assert response.status_code == 401


def test_login_view_may_be_a_url() -> None:
    app, _ = guarded_app(RESILIENCE_LOGIN_VIEW="https://sso.example.test/login?app=docs")
    response = app.test_client().get("/docs", headers=BROWSER)
    assert response.headers["Location"] == "https://sso.example.test/login?app=docs&next=%2Fdocs"


def test_unknown_login_endpoint_answers_401_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = guarded_app(RESILIENCE_LOGIN_VIEW="auth.login")
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/docs", headers=BROWSER)
    assert response.status_code == 401
    assert "'auth.login' is not an endpoint" in errors_logged(caplog)[0].getMessage()


def test_next_never_points_to_another_host() -> None:
    app, _ = guarded_app(RESILIENCE_LOGIN_VIEW="login")

    @app.get("/<path:anything>")
    @authentication_required
    def catch_all(anything: str) -> str:
        return anything

    client = app.test_client()
    for path in ("//evil.example/x", "/\\evil.example/x"):
        response = client.get("/", headers=BROWSER, environ_overrides={"PATH_INFO": path})
        location = response.headers["Location"]
        assert location == "/login?next=%2Fevil.example%2Fx", path


def test_next_keeps_the_script_root() -> None:
    app, _ = guarded_app(RESILIENCE_LOGIN_VIEW="login")
    response = app.test_client().get("/docs", headers=BROWSER, base_url="http://localhost/app")
    assert response.headers["Location"] == "/app/login?next=%2Fapp%2Fdocs"


def test_a_guarded_login_view_answers_401_instead_of_redirecting_to_itself() -> None:
    app, _ = app_with_users(RESILIENCE_LOGIN_VIEW="signin")

    @app.get("/signin")
    @authentication_required
    def signin() -> str:
        return "signin"

    assert app.test_client().get("/signin", headers=BROWSER).status_code == 401


def test_user_that_is_not_authenticated_is_anonymous() -> None:
    app, resilience = guarded_app()
    resilience.current_user_loader(lambda: User(9, {"documents:write"}, is_authenticated=False))
    assert app.test_client().get("/api/docs").status_code == 401


def test_login_required_lets_any_user_in(client: FlaskClient) -> None:
    assert client.get("/api/me").status_code == 401
    log_in(client, 2)
    assert client.get("/api/me").get_data(as_text=True) == "me"


# -- Permissions and roles ------------------------------------------------------------------------


def test_user_with_the_permission_gets_the_view(client: FlaskClient) -> None:
    log_in(client, 1)
    assert client.post("/api/docs").get_data(as_text=True) == "written"


def test_user_without_the_permission_gets_403_problem(client: FlaskClient) -> None:
    log_in(client, 2)
    response = client.post("/api/docs", headers=API)
    assert response.status_code == 403
    assert problem(response)["reason"] == "permission"


def test_browser_without_the_permission_gets_a_403_page_not_a_redirect(client: FlaskClient) -> None:
    log_in(client, 2)
    response = client.get("/docs", headers=BROWSER)
    assert response.status_code == 403
    assert response.mimetype == "text/html"


def test_any_of_needs_one_and_all_of_needs_every_one(client: FlaskClient) -> None:
    log_in(client, 2)
    assert client.get("/api/any").status_code == 200
    assert client.get("/api/both").status_code == 403


def test_roles(client: FlaskClient) -> None:
    log_in(client, 1)
    assert client.get("/api/admin").status_code == 200
    log_in(client, 2)
    assert client.get("/api/admin").status_code == 403
    assert problem(client.get("/api/admin"))["reason"] == "role"
    assert client.get("/api/staff").status_code == 200


def test_preflight_passes_every_guard(client: FlaskClient) -> None:
    assert client.options("/api/docs").get_data(as_text=True) == "written"


@pytest.mark.parametrize(
    "names", [(), ("",), ("  ",), (None,), (["documents:write"],), ("documents:write", 3)]
)
def test_empty_or_odd_permission_lists_are_refused_when_applied(names: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError):
        permission_required(*names)
    with pytest.raises(ConfigurationError):
        role_required(*names)


def test_empty_permission_list_message_says_why() -> None:
    with pytest.raises(ConfigurationError, match="would allow everyone"):
        permission_required()


# -- Loaders that fail ----------------------------------------------------------------------------


def test_permission_loader_that_raises_denies_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, resilience = guarded_app()

    @resilience.permission_loader
    def broken(user: User) -> set[str]:
        raise KeyError("permissions table renamed")

    client = app.test_client()
    log_in(client, 1)
    with caplog.at_level(logging.INFO):
        response = client.get("/api/docs", headers={"X-Request-ID": "req-loader"})

    assert response.status_code == 403
    [record] = [r for r in caplog.records if "flask_resilience" in r.name]
    assert record.levelno == logging.ERROR
    assert "permission_loader raised KeyError" in record.getMessage()
    assert "req-loader" in record.getMessage()
    assert "endpoint=write_docs" in record.getMessage()
    assert record.exc_info is not None


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "documents:write",
        b"documents:write",
        {"documents:write": True},
        ["documents:write", 1],
        42,
        True,
    ],
)
def test_permission_loader_answer_of_the_wrong_type_denies(
    answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, resilience = guarded_app()
    resilience.permission_loader(lambda user: answer)
    client = app.test_client()
    log_in(client, 1)
    with caplog.at_level(logging.ERROR):
        assert client.get("/api/docs").status_code == 403
    assert "access denied" in errors_logged(caplog)[0].getMessage()


def test_permission_loader_may_answer_any_iterable(app: Flask, client: FlaskClient) -> None:
    guard_state(app).callbacks.permission_loader = lambda user: (
        name for name in ["documents:write"]
    )
    log_in(client, 2)
    assert client.get("/api/docs").status_code == 200


def test_missing_loader_denies_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    app, resilience = guarded_app()
    resilience._guards.permission_loader = None
    resilience._guards.org_access_loader = None
    client = app.test_client()
    log_in(client, 1)
    with caplog.at_level(logging.ERROR):
        assert client.get("/api/docs").status_code == 403
        assert client.get("/api/orgs/10").status_code == 403
    messages = [r.getMessage() for r in errors_logged(caplog)]
    assert "no permission_loader is registered" in messages[0]
    assert "no org_access_loader is registered" in messages[1]


def test_user_loader_that_raises_is_anonymous_not_500(caplog: pytest.LogCaptureFixture) -> None:
    app, resilience = guarded_app()

    @resilience.current_user_loader
    def broken() -> User:
        raise AttributeError("'NoneType' object has no attribute 'id'")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/api/docs")
    assert response.status_code == 401
    assert "user_loader raised AttributeError" in errors_logged(caplog)[0].getMessage()


def test_loaders_run_once_per_request() -> None:
    app, resilience = app_with_users()
    calls: list[str] = []

    @resilience.permission_loader
    def permissions(user: User) -> set[str]:
        calls.append("permissions")
        return user.permissions

    @resilience.current_user_loader
    def load_user() -> User:
        calls.append("user")
        return USERS[1]

    @app.get("/api/stacked")
    @permission_required("documents:read")
    @role_required("admin")
    @permission_required("documents:write")
    def stacked() -> str:
        return "stacked"

    assert app.test_client().get("/api/stacked").status_code == 200
    assert calls == ["user", "permissions"]


# -- Organizations --------------------------------------------------------------------------------


def test_org_member_gets_the_view_and_another_org_is_403(client: FlaskClient) -> None:
    log_in(client, 1)
    assert client.get("/api/orgs/10").get_json() == {"org": 10}
    response = client.get("/api/orgs/20")
    assert response.status_code == 403
    assert problem(response)["reason"] == "organization"


def test_anonymous_org_request_is_401(client: FlaskClient) -> None:
    assert client.get("/api/orgs/10").status_code == 401


def test_org_id_from_the_session(client: FlaskClient) -> None:
    log_in(client, 1, current_org=10)
    assert client.get("/api/current-org").status_code == 200
    log_in(client, 1, current_org=20)
    assert client.get("/api/current-org").status_code == 403


def test_org_id_kept_in_the_session_after_logout_lets_nobody_in(client: FlaskClient) -> None:
    log_in(client, 1, current_org=10)
    with client.session_transaction() as sess:
        del sess["uid"]  # a logout that forgot the organization
    assert client.get("/api/current-org").status_code == 401
    log_in(client, 2)  # another user on the same browser
    assert client.get("/api/current-org").status_code == 403


def test_org_id_from_the_query(client: FlaskClient) -> None:
    log_in(client, 2)
    assert client.get("/api/report?org=20").status_code == 200
    assert client.get("/api/report?org=10").status_code == 403
    assert client.get("/api/report").status_code == 403
    assert client.get("/api/report?org=").status_code == 403


def test_org_source_from_the_configuration() -> None:
    app, _ = app_with_users(RESILIENCE_ORG_ID_SOURCE="session")

    @app.get("/api/org-home")
    @org_access_required()
    def org_home() -> str:
        return "home"

    client = app.test_client()
    log_in(client, 1, org_id=10)
    assert client.get("/api/org-home").status_code == 200
    with client.session_transaction() as sess:
        del sess["org_id"]
    assert client.get("/api/org-home").status_code == 403


@pytest.mark.parametrize("answer", [None, 1, "true", [True], 1.0, object()])
def test_org_loader_answer_other_than_a_bool_denies(
    answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, resilience = guarded_app()
    resilience.org_access_loader(lambda user, org_id: answer)
    client = app.test_client()
    log_in(client, 1)
    with caplog.at_level(logging.ERROR):
        assert client.get("/api/orgs/10").status_code == 403
    assert "not True or False" in errors_logged(caplog)[0].getMessage()


def test_org_loader_that_raises_denies(caplog: pytest.LogCaptureFixture) -> None:
    app, resilience = guarded_app()

    @resilience.org_access_loader
    def broken(user: User, org_id: Any) -> bool:
        raise LookupError(org_id)

    client = app.test_client()
    log_in(client, 1)
    with caplog.at_level(logging.ERROR):
        assert client.get("/api/orgs/10").status_code == 403
    assert "org_access_loader raised LookupError" in errors_logged(caplog)[0].getMessage()


@pytest.mark.parametrize("kwargs", [{"org_id_arg": ""}, {"org_id_arg": None}, {"source": "header"}])
def test_org_guard_arguments_are_checked_when_applied(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        org_access_required(**kwargs)


# -- The signal -----------------------------------------------------------------------------------


def test_denials_are_announced(client: FlaskClient, denials: list[dict[str, Any]]) -> None:
    client.get("/api/docs")
    log_in(client, 2)
    client.get("/api/orgs/10")
    assert denials == [
        {"user": None, "status": 401, "reason": "login-required", "required": (), "org_id": None},
        {
            "user": USERS[2],
            "status": 403,
            "reason": "organization",
            "required": ("org_id",),
            "org_id": 10,
        },
    ]


def test_a_failing_receiver_does_not_change_the_answer(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_audit(sender: Flask, **details: Any) -> None:
        raise RuntimeError("audit log is full")

    access_refused.connect(broken_audit)
    try:
        with caplog.at_level(logging.ERROR):
            assert client.get("/api/docs").status_code == 401
    finally:
        access_refused.disconnect(broken_audit)
    assert "access_refused receiver failed" in errors_logged(caplog)[0].getMessage()


def test_the_signal_is_reachable_from_the_extension() -> None:
    assert Resilience.access_refused is access_refused


# -- Flask-Login ----------------------------------------------------------------------------------


class LoginUser(flask_login.UserMixin):  # type: ignore[misc]
    def __init__(self, user_id: str, permissions: set[str]) -> None:
        self.id = user_id
        self.permissions = permissions


LOGIN_USERS = {"7": LoginUser("7", {"documents:write"}), "8": LoginUser("8", set())}


def flask_login_app(*, login_view: str | None = "signin_page") -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    resilience = Resilience(app)
    manager = flask_login.LoginManager(app)
    manager.login_view = login_view
    manager.user_loader(LOGIN_USERS.get)
    resilience.permission_loader(lambda user: user.permissions)

    @app.get("/signin")
    def signin_page() -> str:
        return "sign in here"

    @app.get("/signin/<user_id>")
    def signin(user_id: str) -> str:
        flask_login.login_user(LOGIN_USERS[user_id])
        return "signed in"

    @app.get("/docs")
    @permission_required("documents:write")
    def docs() -> str:
        return "docs"

    return app


def test_flask_login_user_is_the_current_user() -> None:
    client = flask_login_app().test_client()
    assert client.get("/docs").status_code == 401
    client.get("/signin/8")
    assert client.get("/docs").status_code == 403
    client.get("/signin/7")
    assert client.get("/docs").status_code == 200


def test_flask_login_login_view_is_used_for_browsers() -> None:
    response = flask_login_app().test_client().get("/docs", headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["Location"] == "/signin?next=%2Fdocs"


def test_resilience_login_view_wins_over_flask_login() -> None:
    app = flask_login_app()
    guards = guard_state(app)
    guards.settings = dataclasses.replace(guards.settings, login_view="/elsewhere")
    response = app.test_client().get("/docs", headers=BROWSER)
    assert response.headers["Location"] == "/elsewhere?next=%2Fdocs"


def test_flask_login_without_login_view_answers_401() -> None:
    response = flask_login_app(login_view=None).test_client().get("/docs", headers=BROWSER)
    assert response.status_code == 401


def test_flask_login_user_loader_that_raises_is_anonymous(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = flask_login_app()

    def broken(user_id: str) -> LoginUser:
        raise ValueError(user_id)

    app.login_manager.user_loader(broken)  # type: ignore[attr-defined]
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = "7"
    with caplog.at_level(logging.ERROR):
        assert client.get("/docs").status_code == 401
    assert "Flask-Login's user loader raised ValueError" in errors_logged(caplog)[0].getMessage()


def test_the_extensions_user_loader_wins_over_flask_login() -> None:
    app = flask_login_app()
    guard_state(app).callbacks.current_user_loader = lambda: (
        LOGIN_USERS["7"] if session.get("token") else None
    )
    client = app.test_client()
    client.get("/signin/8")
    assert client.get("/docs").status_code == 401
    with client.session_transaction() as sess:
        sess["token"] = "t"
    assert client.get("/docs").status_code == 200


def test_without_flask_login_and_user_loader_everyone_is_anonymous() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, TESTING=True)
    resilience = Resilience(app)
    resilience.permission_loader(lambda user: {"documents:write"})

    @app.get("/api/docs")
    @permission_required("documents:write")
    def docs() -> str:
        return "docs"

    assert not hasattr(app, "login_manager")
    assert app.test_client().get("/api/docs").status_code == 401


def test_loaders_registered_before_init_app_serve_every_app() -> None:
    resilience = Resilience()
    resilience.current_user_loader(lambda: USERS[1])
    resilience.permission_loader(lambda user: user.permissions)
    apps = [Flask("one"), Flask("two")]

    def docs() -> str:
        return "docs"

    for each in apps:
        each.config.update(SECRET_KEY=SECRET, TESTING=True)
        resilience.init_app(each)
        each.add_url_rule("/api/docs", view_func=permission_required("documents:write")(docs))
    assert [each.test_client().get("/api/docs").status_code for each in apps] == [200, 200]


def test_guard_on_an_app_without_the_extension_says_what_to_do() -> None:
    app = Flask(__name__)
    app.config["TESTING"] = True

    def docs() -> str:
        return "x"

    app.add_url_rule("/api/docs", view_func=permission_required("documents:write")(docs))
    with pytest.raises(RuntimeError, match="init_app"):
        app.test_client().get("/api/docs")


# -- Async views and loaders ----------------------------------------------------------------------


def test_async_views_and_loaders_are_guarded() -> None:
    app, resilience = app_with_users()

    @resilience.permission_loader
    async def permissions(user: User) -> set[str]:
        return user.permissions

    @app.get("/api/async")
    @permission_required("documents:write")
    async def async_docs() -> str:
        return "async docs"

    client = app.test_client()
    log_in(client, 2)
    assert client.get("/api/async").status_code == 403
    log_in(client, 1)
    assert client.get("/api/async").get_data(as_text=True) == "async docs"


def test_an_app_handler_for_the_denial_wins(app: Flask, client: FlaskClient) -> None:
    @app.errorhandler(PermissionDenied)
    def forbidden(error: PermissionDenied) -> tuple[str, int]:
        return f"custom {error.members['reason']}", 403

    log_in(client, 2)
    response = client.get("/api/admin")
    assert (response.status_code, response.get_data(as_text=True)) == (403, "custom role")
