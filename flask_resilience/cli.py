"""The ``flask resilience`` command group."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from .extension import _get_state


@click.group("resilience")
def resilience_group() -> None:
    """flask_resilience: configuration and checks of this app."""


@resilience_group.command("config")
@with_appcontext
def show_config() -> None:
    """Print every RESILIENCE_* setting in force, after defaults and checks."""
    state = _get_state(current_app)
    width = max(len(key) for key in state.config)
    for key, value in sorted(state.config.items()):
        click.echo(f"{key:<{width}}  {value!r}")
