"""A database that goes down while a guard asks it: 503 problem+json, never a grant, 403 or 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, session
from flask.sessions import SessionMixin
from flask_sqlalchemy import SQLAlchemy

from flask_resilience import Resilience, org_access_required, permission_required
from tests.guards.helpers import SECRET, log_in, problem
from tests.support.servers import PostgresServer, unique_database_name

pytestmark = pytest.mark.postgres

SCHEMA = [
    "CREATE TABLE users (id int PRIMARY KEY)",
    "CREATE TABLE grants (user_id int, permission text)",
    "CREATE TABLE members (user_id int, org_id int)",
    "INSERT INTO users VALUES (1)",
    "INSERT INTO grants VALUES (1, 'documents:write')",
    "INSERT INTO members VALUES (1, 10)",
]


@pytest.fixture
def database(pg: PostgresServer) -> Iterator[str]:
    name = unique_database_name()
    url = pg.create_database(name)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for statement in SCHEMA:
            connection.exec_driver_sql(statement)
    engine.dispose()
    yield url
    if not pg.is_running():
        pg.restart()
    pg.drop_database(name)


def db_app(url: str, from_database: set[str]) -> tuple[Flask, SQLAlchemy]:
    """Every loader named in ``from_database`` asks PostgreSQL; the others answer "yes"."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=SECRET,
        TESTING=True,
        PROPAGATE_EXCEPTIONS=False,  # let the error handlers answer, as in production
        SQLALCHEMY_DATABASE_URI=url,
    )
    db = SQLAlchemy()
    resilience = Resilience(app, db=db)
    db.init_app(app)

    def ask(statement: str, **params: Any) -> list[Any]:
        return list(db.session.execute(sa.text(statement), params).scalars())

    @resilience.session_validator
    def account_still_exists(sess: SessionMixin) -> bool:
        if "validator" not in from_database:
            return True
        return bool(ask("SELECT id FROM users WHERE id = :id", id=sess.get("uid")))

    @resilience.current_user_loader
    def load_user() -> int | None:
        uid = session.get("uid")
        if "user" not in from_database:
            return uid if isinstance(uid, int) else None
        found = ask("SELECT id FROM users WHERE id = :id", id=uid)
        return found[0] if found else None

    @resilience.permission_loader
    def permissions(user: int) -> list[str]:
        if "permissions" not in from_database:
            return ["documents:write"]
        return ask("SELECT permission FROM grants WHERE user_id = :id", id=user)

    @resilience.org_access_loader
    def member(user: int, org_id: int) -> bool:
        if "org" not in from_database:
            return True
        return bool(
            ask("SELECT 1 FROM members WHERE user_id = :u AND org_id = :o", u=user, o=org_id)
        )

    @app.get("/api/orgs/<int:org_id>/docs")
    @org_access_required()
    @permission_required("documents:write")
    def docs(org_id: int) -> str:
        return "docs"

    return app, db


LOADERS = ("validator", "user", "permissions", "org")


def test_database_down_while_checking_answers_503(pg: PostgresServer, database: str) -> None:
    """Each loader in turn is the one that asks the database; the server is stopped once."""
    apps = {loader: db_app(database, {loader}) for loader in LOADERS}
    clients = {loader: app.test_client() for loader, (app, _) in apps.items()}
    for loader, client in clients.items():
        log_in(client, 1)
        assert client.get("/api/orgs/10/docs").status_code == 200, loader
        expected = 403 if loader == "org" else 200  # the org loader does ask the database
        assert client.get("/api/orgs/20/docs").status_code == expected, loader

    pg.stop()
    for loader, client in clients.items():
        response = client.get("/api/orgs/10/docs")
        assert response.status_code == 503, loader
        assert problem(response)["status"] == 503
        assert "Retry-After" in response.headers

    for app, db in apps.values():
        with app.app_context():
            db.engine.dispose()
