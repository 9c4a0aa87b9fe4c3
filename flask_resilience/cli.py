"""``flask resilience``: startup checks, the health summary and container probes.

Registered through the ``flask.commands`` entry point, so every app that has
flask_resilience installed gets it::

    flask resilience config
    flask resilience check [--json] [--retries N] [--workers N]
    flask resilience status [--url URL]
    flask resilience probe live|ready|startup [--url URL] [--timeout SECONDS]
    flask resilience breakers [--json]
    flask resilience breakers open|close|reset NAME

``probe`` exits 0 when the endpoint answers 2xx and 1 otherwise, for a Dockerfile
``HEALTHCHECK`` in images without curl.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo, with_appcontext

from . import circuit, startup
from .config import DEFAULT_SETTINGS, SETTINGS
from .health.blueprint import IN_PROCESS_CALLER
from .startup import CheckResult
from .state import EXTENSION_KEY, ResilienceState, get_state

PROBE_TIMEOUT = 5.0


@click.group(
    "resilience", help="flask_resilience: configuration, startup checks, health and probes."
)
def resilience_group() -> None:
    pass


@resilience_group.command("config")
@with_appcontext
def show_config() -> None:
    """Print every RESILIENCE_* setting in force, after defaults and checks."""
    settings = get_state(current_app).settings
    width = max(len(setting.name) for setting in SETTINGS)
    for setting in sorted(SETTINGS, key=lambda setting: setting.name):
        value = getattr(settings, setting.name.removeprefix("RESILIENCE_").lower())
        click.echo(f"{setting.name:<{width}}  {value!r}")


@resilience_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--retries", type=click.IntRange(min=1), help="Attempts for each database/Redis.")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes that will serve.")
@click.pass_context
def check_command(
    ctx: click.Context, as_json: bool, retries: int | None, workers: int | None
) -> None:
    """Check Python, packages, libmagic, folders, databases, Redis and security settings.

    Exits 0 when no check failed (warnings do not fail), 1 otherwise.
    """
    token = startup.skip_validation.set(True)
    try:
        app = ctx.ensure_object(ScriptInfo).load_app()
    except Exception as error:
        results = [CheckResult("app", "fail", f"cannot load the app: {error}")]
    else:
        with app.app_context():
            results = startup.run_checks(app, retries=retries, workers=workers)
    finally:
        startup.skip_validation.reset(token)
    click.echo(startup.render_json(results) if as_json else startup.render_table(results))
    ctx.exit(0 if startup.passed(results) else 1)


@resilience_group.command("status")
@click.option("--url", help="Ask a running app at this base URL instead of loading it.")
@click.option(
    "--token",
    envvar="RESILIENCE_HEALTH_TOKEN",
    help="The health token, for --url (default: $RESILIENCE_HEALTH_TOKEN).",
)
@click.option("--timeout", type=float, default=PROBE_TIMEOUT, show_default=True)
@click.pass_context
def status_command(ctx: click.Context, url: str | None, token: str | None, timeout: float) -> None:
    """Print the app's detailed health; exit 1 unless it is healthy."""
    status, body = _get(ctx, url, "detailed", timeout, token=token)
    if status == 404 and url is None:
        status, body = 200, _local_summary(_load_app(ctx))
    click.echo(_pretty(body))
    ctx.exit(0 if 200 <= status < 300 else 1)


@resilience_group.command("probe")
@click.argument("kind", type=click.Choice(["live", "ready", "startup"]))
@click.option("--url", help="Base URL of the running app, such as http://127.0.0.1:8000.")
@click.option("--timeout", type=float, default=PROBE_TIMEOUT, show_default=True)
@click.pass_context
def probe_command(ctx: click.Context, kind: str, url: str | None, timeout: float) -> None:
    """Exit 0 when the app's /health/live, /ready or /startup answers 2xx, 1 otherwise."""
    status, _ = _get(ctx, url, kind, timeout)
    healthy = 200 <= status < 300
    click.echo(f"{kind}: {status or 'unreachable'}", err=not healthy)
    ctx.exit(0 if healthy else 1)


@resilience_group.group("breakers", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the states as JSON.")
@click.pass_context
@with_appcontext
def breakers_group(ctx: click.Context, as_json: bool) -> None:
    """List the circuit breakers and their states; open, close or reset one.

    With Redis storage (RESILIENCE_CIRCUIT_STORAGE_URI) what is listed and changed
    is shared by every worker and instance; with memory storage each process has
    its own breakers, this command's included, so it can change none of a
    running server's: use POST <health prefix>/breakers/NAME/open|close|reset.
    """
    if ctx.invoked_subcommand is not None:
        return
    states = circuit.breaker_states()
    if as_json:
        click.echo(json.dumps(states, indent=2))
        return
    if not states:
        click.echo("No circuit breaker is defined in this app.")
        return
    width = max(len(name) for name in states)
    for name, entry in states.items():
        state, storage = entry["state"], entry["storage"]
        click.echo(f"{name:<{width}}  {state:<13}  {storage:<6}  {_window(entry)}")
    if get_state().get(circuit.Breakers).link is None:
        click.echo("Memory storage: these are this command's own breakers, not a server's.")


def _window(entry: dict[str, Any]) -> str:
    parts = [f"{entry['calls']} calls"]
    if entry["failure_rate"] is not None:
        parts.append(f"{entry['failure_rate']:g}% failed")
    if entry["slow_call_duration"] is not None and entry["slow_call_rate"] is not None:
        parts.append(f"{entry['slow_call_rate']:g}% slow")
    if entry["retry_after"] is not None:
        parts.append(f"trial in {entry['retry_after']:.0f} s")
    return ", ".join(parts)


def _breaker_command(action: str, summary: str) -> None:
    @breakers_group.command(action, help=summary)
    @click.argument("name")
    @with_appcontext
    def command(name: str) -> None:
        if get_state().get(circuit.Breakers).link is None:
            raise click.ClickException(
                "RESILIENCE_CIRCUIT_STORAGE_URI is not set: each process has its own"
                " breakers, so this command would change its own only. Use"
                f" POST <health prefix>/breakers/{name}/{action} on the server instead."
            )
        if name not in circuit.defined_names():
            known = ", ".join(circuit.defined_names()) or "none"
            raise click.ClickException(f"No circuit breaker is called {name!r} (known: {known}).")
        try:
            entry = circuit.control(name, action)
        except circuit.BreakerNotShared as error:
            raise click.ClickException(str(error.description)) from None
        click.echo(f"{name}: {entry['state']} for every worker and instance.")


_breaker_command("open", "Force the breaker NAME open for every process: it refuses every call.")
_breaker_command(
    "close", "Force the breaker NAME closed for every process: every call passes, unrecorded."
)
_breaker_command("reset", "Close the breaker NAME with an empty window; releases a forced state.")


def _get(
    ctx: click.Context, url: str | None, endpoint: str, timeout: float, token: str | None = None
) -> tuple[int, Any]:
    """(status, body) of ``<health prefix>/<endpoint>``, over HTTP or in-process.

    In-process the caller holds the app already, so the protected endpoints let it in.
    """
    if url is not None:
        return _get_over_http(f"{url.rstrip('/')}/health/{endpoint}", timeout, token)
    app = _load_app(ctx)
    state = app.extensions.get(EXTENSION_KEY)
    settings = state.settings if isinstance(state, ResilienceState) else DEFAULT_SETTINGS
    prefix = settings.health_url_prefix
    response = app.test_client().get(f"{prefix}/{endpoint}", environ_base={IN_PROCESS_CALLER: True})
    return response.status_code, _decoded(response.get_data(as_text=True))


def _load_app(ctx: click.Context) -> Flask:
    try:
        return ctx.ensure_object(ScriptInfo).load_app()
    except Exception as error:  # the probe fails; a traceback would hide why
        raise click.ClickException(f"cannot load the app: {error}") from error


def _get_over_http(url: str, timeout: float, token: str | None) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), _decoded(response.read().decode(errors="replace"))
    except urllib.error.HTTPError as error:
        return error.code, _decoded(error.read().decode(errors="replace"))
    except (OSError, ValueError) as error:  # refused, timed out, not a URL
        return 0, {"error": str(error)}


def _local_summary(app: Flask) -> dict[str, Any]:
    """What the extension knows without a health endpoint: draining and its sections."""
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, ResilienceState):
        return {"error": "flask_resilience is not initialised on this app"}
    with app.app_context():
        summary: dict[str, Any] = {"draining": state.draining.is_set()}
        for name, provider in state.detail_providers.items():
            summary[name] = provider()
    return summary


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pretty(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body, indent=2, default=str)
