"""``flask resilience probe startup``, in process."""

from __future__ import annotations

from pathlib import Path

from flask_resilience import Resilience
from flask_resilience.cli import resilience_group
from tests.health.apps import create_app


def test_the_startup_probe_command(tmp_path: Path) -> None:
    app = create_app(instance_path=str(tmp_path), RESILIENCE_MONITOR_ENABLED=False)
    runner = app.test_cli_runner()
    passed = runner.invoke(resilience_group, ["probe", "startup"])
    assert (passed.exit_code, passed.output.strip()) == (0, "startup: 200")
    extension: Resilience = app.extensions["test_resilience"]
    extension.mark_broken("wedged", app=app)
    failed = runner.invoke(resilience_group, ["probe", "startup"])
    assert (failed.exit_code, failed.output.strip()) == (1, "startup: 503")
