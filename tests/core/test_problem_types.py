"""Each kind of problem has a stable type URI, documented with its members."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask, abort
from werkzeug.exceptions import Conflict

import flask_resilience
from flask_resilience import ProblemError, Resilience

DOCS = Path(__file__).resolve().parents[2] / "docs" / "problems.md"


def problem_classes() -> list[type[ProblemError]]:
    for module in pkgutil.walk_packages(flask_resilience.__path__, "flask_resilience."):
        importlib.import_module(module.name)
    found: list[type[ProblemError]] = []
    pending = list(ProblemError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("flask_resilience."):
            found.append(cls)
    return found


def test_every_problem_of_the_extension_has_a_documented_kind_of_its_own() -> None:
    documented = dict(re.findall(r"^\| `([a-z-]+)` \| \d+ \| `(\w+)` \|", DOCS.read_text(), re.M))
    classes = problem_classes()
    kinds = [cls.kind for cls in classes]
    assert len(classes) >= 15
    assert None not in kinds
    assert len(set(kinds)) == len(kinds)
    for cls in classes:
        assert documented.get(str(cls.kind)) == cls.__name__, cls


class NameTaken(ProblemError, Conflict):
    kind = "name-taken"


class OwnType(ProblemError, Conflict):
    problem_type = "https://api.example.test/problems/own"


class Untyped(ProblemError, Conflict):
    pass


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app(RATELIMIT_APPLICATION="1 per minute", RESILIENCE_PROBLEM_TYPE_BASE="tag:x:")

    @app.get("/api/taken")
    def taken() -> str:
        raise NameTaken("taken", errors=[{"field": "name"}])

    @app.get("/api/own")
    def own() -> str:
        raise OwnType("own")

    @app.get("/api/untyped")
    def untyped() -> str:
        raise Untyped("plain")

    @app.get("/api/abort")
    def aborted() -> str:
        abort(409)

    Resilience(app)
    return app


def test_the_type_follows_the_kind_under_the_configured_base(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/api/taken").get_json()["type"] == "tag:x:name-taken"
    client.get("/api/own")  # the one request the limit allows is spent here
    limited = client.get("/api/own").get_json()
    assert (limited["status"], limited["type"]) == (429, "tag:x:rate-limited")
    assert limited["limit"] == "1 per 1 minute"


def test_an_absolute_type_of_its_own_wins_and_plain_problems_are_about_blank(
    make_app: Callable[..., Flask],
) -> None:
    fresh = make_app()

    @fresh.get("/api/own")
    def own() -> str:
        raise OwnType("own")

    @fresh.get("/api/untyped")
    def untyped() -> str:
        raise Untyped("plain")

    @fresh.get("/api/abort")
    def aborted() -> str:
        abort(409)

    Resilience(fresh)
    client = fresh.test_client()
    assert client.get("/api/own").get_json()["type"] == "https://api.example.test/problems/own"
    assert client.get("/api/untyped").get_json()["type"] == "about:blank"
    assert client.get("/api/abort").get_json()["type"] == "about:blank"
    assert client.get("/nowhere").get_json()["type"] == "about:blank"
