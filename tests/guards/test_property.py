"""Property: whatever the loaders answer, a guarded view is 200 only on their "yes", never 500."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from flask import Flask, session
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_resilience import (
    Resilience,
    org_access_required,
    permission_required,
    session_required,
)
from flask_resilience.guards import guard_state
from tests.guards.helpers import API, BROWSER, SECRET, USERS, Clock, User, raw_signed_cookie

NEEDED = "documents:write"
EXCEPTIONS = (ValueError, KeyError, TypeError, AttributeError, LookupError, RuntimeError, OSError)


@dataclass(frozen=True)
class Outcome:
    kind: str  # allow, deny, raise, none, garbage
    value: Any = None

    def produce(self) -> Any:
        if self.kind == "raise":
            raise self.value("loader failed")
        return self.value


def outcomes(allow: st.SearchStrategy[Any], deny: st.SearchStrategy[Any], garbage: Any) -> Any:
    return st.one_of(
        allow.map(lambda value: Outcome("allow", value)),
        deny.map(lambda value: Outcome("deny", value)),
        st.sampled_from(EXCEPTIONS).map(lambda error: Outcome("raise", error)),
        st.just(Outcome("none")),
        garbage.map(lambda value: Outcome("garbage", value)),
    )


names = st.text(min_size=1, max_size=12)
user_outcomes = outcomes(
    st.just(User(1)),
    st.just(User(2, is_authenticated=False)),
    st.one_of(st.just(False), st.builds(lambda: type("Odd", (), {"is_authenticated": 1})())),
)
permission_outcomes = outcomes(
    st.lists(names).map(lambda extra: [NEEDED, *extra]),
    st.lists(names.filter(lambda name: name != NEEDED)).map(set),
    st.one_of(
        st.just(NEEDED),
        st.just(NEEDED.encode()),
        st.integers(),
        st.booleans(),
        st.dictionaries(st.just(NEEDED), st.booleans(), min_size=1),
        st.lists(st.integers(), min_size=1).map(lambda items: [NEEDED, *items]),
        st.builds(object),
    ),
)
org_outcomes = outcomes(
    st.just(True),
    st.just(False),
    st.one_of(
        st.integers(),
        st.floats(allow_nan=False),
        st.text(),
        st.lists(st.just(True), min_size=1),
        st.just(NEEDED),
    ),
)


class Loaders:
    """What each loader answers in the current example."""

    user = Outcome("allow", User(1))
    permissions = Outcome("allow", [NEEDED])
    org = Outcome("allow", True)


@cache
def guarded_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET,
        TESTING=True,
        PROPAGATE_EXCEPTIONS=False,  # a bug would be a 500 answer, which the property refuses
        RESILIENCE_LOGIN_VIEW="login",
        RATELIMIT_ENABLED=False,  # one app answers every example: far over 100 a minute
    )
    resilience = Resilience(app)
    resilience.current_user_loader(lambda: Loaders.user.produce())
    resilience.permission_loader(lambda user: Loaders.permissions.produce())
    resilience.org_access_loader(lambda user, org_id: Loaders.org.produce())

    @app.get("/login")
    def login() -> str:
        return "login"

    @app.route("/api/orgs/<int:org_id>/docs", methods=["GET", "POST", "DELETE"])
    @app.route("/orgs/<int:org_id>/docs", methods=["GET", "POST", "DELETE"])
    @org_access_required()
    @permission_required(NEEDED)
    def docs(org_id: int) -> str:
        return "docs"

    return app


@settings(max_examples=300, deadline=None)
@given(
    user=user_outcomes,
    permissions=permission_outcomes,
    org=org_outcomes,
    path=st.sampled_from(["/api/orgs/10/docs", "/orgs/10/docs"]),
    headers=st.sampled_from([API, BROWSER, {}]),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
)
def test_guarded_view_is_200_only_when_every_loader_said_allow(
    user: Outcome,
    permissions: Outcome,
    org: Outcome,
    path: str,
    headers: dict[str, str],
    method: str,
) -> None:
    Loaders.user, Loaders.permissions, Loaders.org = user, permissions, org
    response = guarded_app().test_client().open(path, method=method, headers=headers)

    allowed = user.kind == "allow" and permissions.kind == "allow" and org.kind == "allow"
    assert response.status_code < 500
    assert (response.status_code == 200) == allowed
    if not allowed:
        authenticated = user.kind == "allow"
        expected = {403} if authenticated else {401, 302, 303}
        assert response.status_code in expected


# -- Whatever a session cookie holds ---------------------------------------------------------------

TAGS = [" t", " di", " b", " m", " u", " d", " x"]  # Flask's tagged JSON, and an unknown tag
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
        st.builds(lambda tag, value: {tag: value}, st.sampled_from(TAGS), inner),
    ),
    max_leaves=8,
)
sessions = st.dictionaries(
    st.sampled_from(["uid", "org_id", "_user_id", "_resilience_started", "_resilience_seen", "x"]),
    json_values,
    max_size=5,
)


@cache
def session_app(checked: bool) -> Flask:
    """With ``checked``, every session check is on; without, only the session interface's guard."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET,
        TESTING=True,
        PROPAGATE_EXCEPTIONS=False,
        RATELIMIT_ENABLED=False,  # one app answers every example: far over 100 a minute
        RESILIENCE_LOGIN_VIEW="login",
    )
    if checked:
        app.config.update(
            RESILIENCE_SESSION_SCHEMA={"uid": int, "org_id": (int, type(None))},
            RESILIENCE_SESSION_IDLE_TIMEOUT=600,
            RESILIENCE_SESSION_ABSOLUTE_TIMEOUT=3600,
        )
    resilience = Resilience(app)
    resilience.current_user_loader(lambda: USERS.get(session.get("uid")))  # type: ignore[arg-type]
    resilience.permission_loader(lambda user: user.permissions)
    if checked:
        resilience.session_validator(lambda sess: sess.get("x") != "forged")
    clock = Clock(1_700_000_000)
    guard_state(app).time_source = clock

    @app.get("/login")
    def login() -> str:
        return "login"

    @app.get("/whoami")
    def whoami() -> str:
        return str(dict(session))

    @app.get("/api/docs")
    @session_required("uid")
    @permission_required("documents:read")
    def docs() -> str:
        return "docs"

    return app


@settings(max_examples=300, deadline=None)
@given(
    content=st.one_of(
        sessions.map(raw_signed_cookie),
        sessions.map(lambda data: raw_signed_cookie(data, secret="another-key")),
        st.text(
            alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=';,\\"'),
            max_size=60,
        ),
    ),
    path=st.sampled_from(["/whoami", "/api/docs", "/login"]),
    headers=st.sampled_from([API, BROWSER]),
)
@pytest.mark.parametrize("checked", [True, False], ids=["checked", "unchecked"])
def test_no_session_cookie_makes_a_500(
    checked: bool, content: str, path: str, headers: dict[str, str]
) -> None:
    client = session_app(checked).test_client()
    client.set_cookie("session", content)
    response = client.get(path, headers=headers)
    assert response.status_code < 500
    assert response.status_code in {200, 302, 401, 403}
