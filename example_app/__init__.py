"""A multi-tenant documents service that shows flask_resilience at work.

Run it with ``flask --app example_app init-db`` and then either
``flask --app example_app run`` or
``gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from . import (
    api,
    auth,
    pages,
    permissions,  # noqa: F401  (registers the guards' loaders on import)
)
from .config import configure, log_to_stderr, quiet_demo_advice
from .demo import init_db_command
from .extensions import db, login_manager, resilience
from .security import csrf_token


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``test_config`` overrides the defaults and the environment.

    ``INSTANCE_PATH`` in ``test_config`` or in the environment moves the instance
    folder (database, uploads, secret key), which lets each test, or each load
    test run, keep its files in a temporary directory.
    """
    instance_path = (test_config or {}).get("INSTANCE_PATH") or os.environ.get("INSTANCE_PATH")
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    configure(app, test_config)
    log_to_stderr()
    quiet_demo_advice(app)

    db.init_app(app)
    # After db.init_app: the extension hardens the engines Flask-SQLAlchemy just set up.
    resilience.init_app(app, db=db)
    login_manager.init_app(app)

    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.jinja_env.globals["csrf_token"] = csrf_token
    # The same answer the guards give, so a page shows only what the user may do.
    app.jinja_env.globals["has_permission"] = resilience.has_permission
    app.cli.add_command(init_db_command)
    return app
