"""What the statement deadline costs a statement, on a real PostgreSQL (informational).

Each figure is the median CPU time of this thread for one ``SELECT 1`` through a
SQLAlchemy connection, with no deadline, then inside a deadline (the statement
arms the deadline watch when it starts and disarms it when it ends), their rounds
interleaved. The server is a throwaway one, started from the machine's PostgreSQL
binaries and removed at the end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa

from bench.table import Row, compare
from flask_resilience import query_timeout
from flask_resilience.deadlines import current_deadline, statements
from tests.support.servers import PostgresServer

REPEAT = 2_000
ROUNDS = 7


def rows(scale: float = 1.0) -> list[Row]:
    statements.enforce(current_deadline)
    with PostgresServer(Path(tempfile.gettempdir())) as server:
        engine = sa.create_engine(server.url)
        try:
            with engine.connect() as connection:
                select = sa.text("SELECT 1")

                def plain() -> object:
                    return connection.execute(select).scalar()

                def with_deadline() -> object:
                    with query_timeout(60):
                        return connection.execute(select).scalar()

                def deadline_alone() -> object:
                    with query_timeout(60):
                        return None

                seconds = compare(
                    {"plain": plain, "deadline": with_deadline, "block": deadline_alone},
                    repeat=REPEAT,
                    rounds=ROUNDS,
                    scale=scale,
                )
        finally:
            engine.dispose()
    cost = seconds["deadline"] - seconds["plain"] - seconds["block"]
    return [
        Row("SELECT 1 on PostgreSQL, no deadline", seconds["plain"] * 1e6, "us", "-", True),
        Row(
            "statement deadline, cost per statement (PostgreSQL)",
            max(0.0, cost) * 1e6,
            "us",
            "report",
            True,
        ),
    ]
