"""The ``flask resilience`` command group."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from flask_resilience import Resilience
from flask_resilience.cli import resilience_group


def test_config_prints_every_setting_in_force(make_app: Callable[..., Flask]) -> None:
    app = make_app(RESILIENCE_REQUEST_TIMEOUT=12)
    Resilience(app)
    result = app.test_cli_runner().invoke(resilience_group, ["config"])
    assert result.exit_code == 0, result.output
    assert "RESILIENCE_REQUEST_TIMEOUT" in result.output
    assert "12" in result.output.split("RESILIENCE_REQUEST_TIMEOUT", 1)[1].splitlines()[0]


def test_config_without_the_extension_says_what_to_do(make_app: Callable[..., Flask]) -> None:
    result = make_app().test_cli_runner().invoke(resilience_group, ["config"])
    assert result.exit_code != 0
    assert "init_app" in str(result.exception)
