"""The extension's conventions and its configuration: defaults, checks, warnings, docs."""

from __future__ import annotations

import ast
import copy
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.pool import NullPool

import flask_resilience
from flask_resilience import ConfigurationError, Resilience, ResilienceWarning
from flask_resilience.config import SETTINGS
from flask_resilience.state import ResilienceState
from tests.support.apps import production_app

PACKAGE_DIR = Path(flask_resilience.__file__).parent
CONFIGURATION_DOC = PACKAGE_DIR.parent / "docs" / "configuration.md"
FIFTY_MB = 50 * 1024 * 1024


def sqlite_file_url(tmp_path: Path, name: str = "app.db") -> str:
    return f"sqlite:///{tmp_path / name}"


# ---------------------------------------------------------------------------
# Extension conventions
# ---------------------------------------------------------------------------


def test_init_app_later_registers_the_extension_with_its_db(tmp_path: Path) -> None:
    app = production_app(SQLALCHEMY_DATABASE_URI=sqlite_file_url(tmp_path))
    db = SQLAlchemy(app)
    resilience = Resilience()
    assert "resilience" not in app.extensions

    resilience.init_app(app, db=db)

    state = app.extensions["resilience"]
    assert isinstance(state, ResilienceState)
    assert state.db is db


def test_constructor_with_an_app_registers_the_extension_with_its_db(tmp_path: Path) -> None:
    app = production_app(SQLALCHEMY_DATABASE_URI=sqlite_file_url(tmp_path))
    db = SQLAlchemy(app)

    Resilience(app, db=db)

    state = app.extensions["resilience"]
    assert isinstance(state, ResilienceState)
    assert state.db is db


def test_one_instance_serves_two_apps(tmp_path: Path) -> None:
    db = SQLAlchemy()
    resilience = Resilience()
    first = production_app(
        SQLALCHEMY_DATABASE_URI=sqlite_file_url(tmp_path, "first.db"),
        RESILIENCE_DATABASE_RETRY_AFTER=1,
    )
    second = production_app(
        SQLALCHEMY_DATABASE_URI=sqlite_file_url(tmp_path, "second.db"),
        RESILIENCE_DATABASE_RETRY_AFTER=9,
    )
    for app in (first, second):
        db.init_app(app)
        resilience.init_app(app, db=db)

    first_state, second_state = first.extensions["resilience"], second.extensions["resilience"]
    assert first_state is not second_state
    assert first_state.shared_health_checks is second_state.shared_health_checks
    assert first_state.settings.database_retry_after == 1
    assert second_state.settings.database_retry_after == 9
    for app, name in ((first, "first.db"), (second, "second.db")):
        with app.app_context():
            assert resilience.pool_status()[None]["url"].endswith(name)
            assert db.session.execute(sa.text("SELECT 1")).scalar() == 1
            for engine in db.engines.values():
                engine.dispose()


@pytest.mark.parametrize("same_instance", [True, False], ids=["same", "another"])
def test_a_second_registration_on_an_app_is_refused_with_the_fix(same_instance: bool) -> None:
    app = production_app()
    resilience = Resilience(app)
    state = app.extensions["resilience"]
    again = resilience if same_instance else Resilience()

    with pytest.raises(RuntimeError, match="already been registered") as info:
        again.init_app(app)

    assert "Import and use that instance instead" in str(info.value)
    assert app.extensions["resilience"] is state


def test_pool_status_in_an_app_that_was_not_initialised_names_init_app() -> None:
    resilience = Resilience()
    other = production_app()
    Resilience(other)

    with production_app().app_context(), pytest.raises(RuntimeError, match="init_app"):
        resilience.pool_status()


def test_pool_status_of_an_app_without_a_database_is_empty() -> None:
    app = production_app()
    resilience = Resilience(app)

    with app.app_context():
        assert resilience.pool_status() == {}


def test_the_extension_never_keeps_the_app(tmp_path: Path) -> None:
    app = production_app(SQLALCHEMY_DATABASE_URI=sqlite_file_url(tmp_path))
    db = SQLAlchemy(app)
    by_constructor = Resilience(app, db=db)
    later = Resilience()
    later.init_app(production_app())

    for resilience in (by_constructor, later):
        assert not hasattr(resilience, "app")
        assert not any(isinstance(value, Flask) for value in vars(resilience).values())


# ---------------------------------------------------------------------------
# RESILIENCE_* keys
# ---------------------------------------------------------------------------


def test_every_key_gets_its_default_and_the_defaults_pass_their_checks() -> None:
    app = production_app()

    Resilience(app)

    settings = app.extensions["resilience"].settings
    for setting in SETTINGS:
        assert app.config[setting.name] == setting.default
        assert getattr(settings, setting.name.removeprefix("RESILIENCE_").lower()) == (
            setting.default
        )


def test_keys_set_to_their_defaults_raise_no_warning() -> None:
    app = production_app(**{setting.name: setting.default for setting in SETTINGS})

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Resilience(app)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.name)
def test_a_value_of_the_wrong_type_is_refused_naming_key_and_value(setting: Any) -> None:
    value = object()
    app = production_app(**{setting.name: value})

    with pytest.raises(ConfigurationError) as info:
        Resilience(app)

    assert setting.name in str(info.value)
    assert repr(value) in str(info.value)
    assert "resilience" not in app.extensions


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RESILIENCE_HARDEN_POOL", "yes"),
        ("RESILIENCE_HARDEN_POOL", 1),
        ("RESILIENCE_LOG_JSON", None),
        ("RESILIENCE_DATABASE_RETRY_AFTER", -1),
        ("RESILIENCE_DATABASE_RETRY_AFTER", 2.5),
        ("RESILIENCE_DATABASE_RETRY_AFTER", True),
        ("RESILIENCE_DATABASE_RETRY_AFTER", "5"),
        ("RESILIENCE_REQUEST_TIMEOUT", 0),
        ("RESILIENCE_REQUEST_TIMEOUT", -30),
        ("RESILIENCE_REQUEST_TIMEOUT", float("inf")),
        ("RESILIENCE_REQUEST_TIMEOUT", float("nan")),
        ("RESILIENCE_ERROR_FORMAT", "xml"),
        ("RESILIENCE_ERROR_FORMAT", "JSON"),
        ("RESILIENCE_API_PREFIXES", "/api"),
        ("RESILIENCE_API_PREFIXES", ["/api", 3]),
        ("RESILIENCE_CLIENT_ERRORS_URL", "client-errors"),
    ],
)
def test_a_wrong_value_is_refused_naming_key_and_value(key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        Resilience(production_app(**{key: value}))

    assert key in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("RESILIENCE_REQUEST_TIMEOUT", None, None),
        ("RESILIENCE_REQUEST_TIMEOUT", 0.5, 0.5),
        ("RESILIENCE_DATABASE_RETRY_AFTER", 0, 0),
        ("RESILIENCE_ERROR_FORMAT", "json", "json"),
        ("RESILIENCE_API_PREFIXES", ["/api", "/v2"], ("/api", "/v2")),
        ("RESILIENCE_CLIENT_ERRORS_URL", "/client-errors", "/client-errors"),
    ],
)
def test_a_good_value_is_kept(key: str, value: Any, expected: Any) -> None:
    app = production_app(**{key: value})

    Resilience(app)

    assert (
        getattr(app.extensions["resilience"].settings, key.removeprefix("RESILIENCE_").lower())
        == expected
    )


@pytest.mark.parametrize(
    ("misspelt", "meant"),
    [
        ("RESILIENCE_HARDEN_POOLS", "RESILIENCE_HARDEN_POOL"),
        ("RESILIENCE_DATABASE_RETRY_AFTR", "RESILIENCE_DATABASE_RETRY_AFTER"),
        ("RESILIENCE_REQUEST_TIMOUT", "RESILIENCE_REQUEST_TIMEOUT"),
    ],
)
def test_a_misspelt_key_warns_with_the_closest_known_key(misspelt: str, meant: str) -> None:
    app = production_app(**{misspelt: 1})

    with pytest.warns(ResilienceWarning) as record:
        Resilience(app)

    assert len(record) == 1
    message = str(record[0].message)
    assert misspelt in message
    assert f"Did you mean {meant}?" in message


@pytest.mark.parametrize(
    ("config", "text"),
    [
        ({"RESILIENCE_HARDEN_POOLS": True}, "RESILIENCE_HARDEN_POOLS"),
        ({"SQLALCHEMY_POOL_SIZE": 5}, "SQLALCHEMY_POOL_SIZE"),
        (
            {"SQLALCHEMY_ENGINE_OPTIONS": {"poolclass": NullPool, "pool_size": 5}},
            "pool_size",
        ),
    ],
    ids=["unknown key", "legacy key", "dropped pool option"],
)
@pytest.mark.parametrize("how", ["init_app", "constructor"])
def test_a_warning_points_at_the_line_that_initialises_the_extension(
    tmp_path: Path, config: dict[str, Any], text: str, how: str
) -> None:
    # A copy: init_app hardens the engine options of app.config in place.
    app = production_app(SQLALCHEMY_DATABASE_URI=sqlite_file_url(tmp_path), **copy.deepcopy(config))
    db = SQLAlchemy()

    with pytest.warns(ResilienceWarning, match=text) as record:
        if how == "init_app":
            Resilience().init_app(app, db=db)
        else:
            Resilience(app, db=db)

    assert [Path(warning.filename).name for warning in record] == [Path(__file__).name]


# ---------------------------------------------------------------------------
# Flask's body limits
# ---------------------------------------------------------------------------


def upload_app(**config: Any) -> Flask:
    app = production_app(**config)

    @app.post("/upload")
    def upload() -> str:
        return str(len(request.get_data()))

    return app


def test_max_content_length_becomes_50_mb_and_is_enforced() -> None:
    app = upload_app()
    assert app.config["MAX_CONTENT_LENGTH"] is None  # Flask's own default: no limit

    Resilience(app)

    assert app.config["MAX_CONTENT_LENGTH"] == FIFTY_MB
    client = app.test_client()
    too_big = client.post(
        "/upload", data=b"x", environ_overrides={"CONTENT_LENGTH": str(FIFTY_MB + 1)}
    )
    assert too_big.status_code == 413
    assert client.post("/upload", data=b"x" * 1000).status_code == 200


def test_a_max_content_length_of_the_user_is_kept() -> None:
    app = upload_app(MAX_CONTENT_LENGTH=1024)

    Resilience(app)

    assert app.config["MAX_CONTENT_LENGTH"] == 1024
    client = app.test_client()
    assert client.post("/upload", data=b"x" * 1024).get_data() == b"1024"
    assert client.post("/upload", data=b"x" * 1025).status_code == 413


@pytest.mark.parametrize(
    ("key", "default"), [("MAX_FORM_MEMORY_SIZE", 500_000), ("MAX_FORM_PARTS", 1_000)]
)
def test_a_form_limit_set_to_none_gets_a_limit(key: str, default: int) -> None:
    app = production_app(**{key: None})

    Resilience(app)

    assert app.config[key] == default


@pytest.mark.parametrize("key", ["MAX_CONTENT_LENGTH", "MAX_FORM_MEMORY_SIZE", "MAX_FORM_PARTS"])
def test_a_form_limit_of_the_user_is_kept(key: str) -> None:
    app = production_app(**{key: 12345})

    Resilience(app)

    assert app.config[key] == 12345


@pytest.mark.parametrize("key", ["MAX_CONTENT_LENGTH", "MAX_FORM_MEMORY_SIZE", "MAX_FORM_PARTS"])
@pytest.mark.parametrize(
    "value",
    [-1, 0, 2.5, "1000", True, object()],
    # An object's repr holds its address, which differs from one process to the next.
    ids=lambda value: "object" if type(value) is object else repr(value),
)
def test_a_wrong_body_limit_is_refused_naming_key_and_value(key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        Resilience(production_app(**{key: value}))

    assert key in str(info.value)
    assert repr(value) in str(info.value)


# ---------------------------------------------------------------------------
# docs/configuration.md
# ---------------------------------------------------------------------------


def documented_keys() -> set[str]:
    """The first cell of every row of the tables in docs/configuration.md."""
    keys = set()
    for line in CONFIGURATION_DOC.read_text().splitlines():
        if line.startswith("|"):
            keys.add(line.split("|")[1].strip().strip("`"))
    return keys


def keys_named_in_the_source() -> set[str]:
    """Every ``RESILIENCE_*`` name in a string literal of the package's modules."""
    names = set()
    for module in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.update(re.findall(r"\bRESILIENCE_[A-Z_]+\b", node.value))
    return names


def test_the_configuration_doc_has_a_key_type_default_meaning_table() -> None:
    lines = CONFIGURATION_DOC.read_text().splitlines()

    assert lines[0] == "# Configuration"
    headers = [line for line in lines if line.startswith("|") and "Key" in line]
    assert headers
    assert [cell.strip() for cell in headers[0].strip("|").split("|")] == [
        "Key",
        "Type",
        "Default",
        "Meaning",
    ]


def test_every_setting_is_documented() -> None:
    missing = {setting.name for setting in SETTINGS} - documented_keys()

    assert not missing, f"add rows for {sorted(missing)} to docs/configuration.md"


def test_every_key_named_in_the_source_is_documented() -> None:
    names = keys_named_in_the_source()
    assert "RESILIENCE_REQUEST_TIMEOUT" in names  # the scan finds what it should

    missing = names - documented_keys()

    assert not missing, f"add rows for {sorted(missing)} to docs/configuration.md"
