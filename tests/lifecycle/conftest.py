"""The lifecycle tests' fixtures: apps served by a real server in this process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Serve apps on threaded Werkzeug servers: ``url = serve(app)``, stopped at the end."""
    servers: list[BaseWSGIServer] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
