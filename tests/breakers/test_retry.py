"""@retry_on_failure: attempts, bounded backoff, what is never retried."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.exceptions import ServiceUnavailable

from flask_resilience import Resilience, retry_on_failure
from tests.breakers.helpers import Flaky, resilient_app


class Sleeps(list[float]):
    """Records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FailsTimes:
    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("flaky")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_max_retries_counts_retries_after_the_first_call_with_exponential_waits() -> None:
    sleeps = Sleeps()
    failing = FailsTimes(10)
    guarded = retry_on_failure(max_retries=3, delay=1.0, jitter=False, sleep=sleeps)(failing)

    with pytest.raises(ConnectionError, match="flaky"):  # the original error, not RetryError
        guarded()
    assert failing.calls == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_returns_the_first_success() -> None:
    sleeps = Sleeps()
    failing = FailsTimes(2)
    assert retry_on_failure(max_retries=3, delay=0.01, sleep=sleeps)(failing)() == "done"
    assert failing.calls == 3
    assert len(sleeps) == 2


def test_waits_are_jittered_around_their_backoff_delay() -> None:
    sleeps = Sleeps()
    guarded = retry_on_failure(max_retries=20, delay=1.0, backoff=1, sleep=sleeps)(FailsTimes(100))
    with pytest.raises(ConnectionError):
        guarded()
    assert all(0.8 <= wait <= 1.2 for wait in sleeps)
    assert len(set(sleeps)) > 10  # without jitter every wait would be 1.0


def test_waits_are_never_above_max_delay_and_stay_jittered_at_it() -> None:
    sleeps = Sleeps()
    guarded = retry_on_failure(max_retries=30, delay=0.5, backoff=3, max_delay=2.0, sleep=sleeps)(
        FailsTimes(100)
    )
    with pytest.raises(ConnectionError):
        guarded()
    assert len(sleeps) == 30
    assert 0.4 <= sleeps[0] <= 0.6
    assert 1.2 <= sleeps[1] <= 1.8
    capped = sleeps[2:]
    assert all(1.6 <= wait <= 2.0 for wait in capped)
    assert len(set(capped)) > 5  # clients that hit the cap together do not retry together


def test_huge_backoff_stays_bounded() -> None:
    sleeps = Sleeps()
    guarded = retry_on_failure(max_retries=3, delay=1, backoff=1e300, max_delay=5, sleep=sleeps)(
        FailsTimes(100)
    )
    with pytest.raises(ConnectionError):
        guarded()
    assert sleeps[-1] <= 5


def test_only_the_listed_exceptions_are_retried() -> None:
    failing = FailsTimes(5, ValueError("bad input"))
    guarded = retry_on_failure(max_retries=3, delay=0, exceptions=(ConnectionError,))(failing)
    with pytest.raises(ValueError):
        guarded()
    assert failing.calls == 1


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_base_exceptions_are_never_caught_or_retried(error: BaseException) -> None:
    failing = FailsTimes(5, error)
    with pytest.raises(type(error)):
        retry_on_failure(max_retries=3, delay=0)(failing)()
    assert failing.calls == 1


def test_http_errors_are_answers_not_faults() -> None:
    failing = FailsTimes(5, ServiceUnavailable())
    with pytest.raises(ServiceUnavailable):
        retry_on_failure(max_retries=3, delay=0)(failing)()
    assert failing.calls == 1


def test_defaults_come_from_the_app_config_or_the_built_in_values() -> None:
    app = resilient_app(RESILIENCE_RETRY_MAX_RETRIES=1, RESILIENCE_RETRY_DELAY=0.5)
    sleeps = Sleeps()
    failing = FailsTimes(100)
    guarded = retry_on_failure(jitter=False, sleep=sleeps)(failing)
    with app.app_context(), pytest.raises(ConnectionError):
        guarded()
    assert (failing.calls, sleeps) == (2, [0.5])

    failing.calls, sleeps[:] = 0, []
    app = resilient_app(RESILIENCE_RETRY_MAX_DELAY=1.5)
    with app.app_context(), pytest.raises(ConnectionError):
        guarded()
    assert (failing.calls, sleeps) == (4, [1.0, 1.5, 1.5])

    failing.calls, sleeps[:] = 0, []
    with pytest.raises(ConnectionError):  # no app: the built-in defaults
        guarded()
    assert (failing.calls, sleeps) == (4, [1.0, 2.0, 4.0])


def test_retries_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    retry_on_failure(max_retries=1, delay=0)(FailsTimes(1))()
    assert "retry 1 of 1" in caplog.text


def test_coroutine_functions_are_retried_without_blocking_the_loop() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    failing = FailsTimes(2)

    @retry_on_failure(max_retries=3, delay=0.01, jitter=False, sleep=record)
    async def fetch() -> str:
        return failing()

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch()) == "done"
    assert waits == [0.01, 0.02]

    always = FailsTimes(100)

    @retry_on_failure(max_retries=1, delay=0)
    async def broken() -> str:
        return always()

    with pytest.raises(ConnectionError):
        asyncio.run(broken())
    assert always.calls == 2


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"max_retries": -1}, ValueError),
        ({"max_retries": 1.5}, ValueError),
        ({"delay": -0.1}, ValueError),
        ({"backoff": 0.5}, ValueError),
        ({"max_delay": float("inf")}, ValueError),
        ({"exceptions": (KeyboardInterrupt,)}, TypeError),
        ({"exceptions": ()}, TypeError),
    ],
)
def test_wrong_arguments_are_refused(arguments: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        retry_on_failure(**arguments)  # type: ignore[arg-type]


# --- never inside an open database transaction --------------------------------


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]


@pytest.fixture
def db_app(tmp_path: Path) -> Iterator[tuple[Flask, SQLAlchemy]]:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'orders.db'}"
    db = SQLAlchemy(model_class=Base)
    db.init_app(app)
    Resilience(app, db=db)
    with app.app_context():
        db.create_all()
        yield app, db
        db.session.remove()
        db.engine.dispose()


def test_not_retried_while_the_session_holds_pending_writes(
    db_app: tuple[Flask, SQLAlchemy], caplog: pytest.LogCaptureFixture
) -> None:
    _, db = db_app
    flaky = Flaky()
    guarded = retry_on_failure(max_retries=3, delay=0)(flaky)
    caplog.set_level(logging.WARNING)

    db.session.add(Order(item="book"))
    with pytest.raises(ConnectionError):
        guarded()
    assert flaky.calls == 1
    assert "uncommitted writes" in caplog.text


def test_not_retried_after_a_flush_in_the_open_transaction(
    db_app: tuple[Flask, SQLAlchemy],
) -> None:
    _, db = db_app
    flaky = Flaky()
    guarded = retry_on_failure(max_retries=3, delay=0)(flaky)

    db.session.add(Order(item="lamp"))
    db.session.flush()  # the row is written; the session no longer lists it as new
    assert not db.session.new
    with pytest.raises(ConnectionError):
        guarded()
    assert flaky.calls == 1

    db.session.rollback()
    flaky.calls = 0
    with pytest.raises(ConnectionError):
        guarded()
    assert flaky.calls == 4


def test_retried_after_commit_and_in_read_only_transactions(
    db_app: tuple[Flask, SQLAlchemy],
) -> None:
    _, db = db_app
    flaky = Flaky()
    guarded = retry_on_failure(max_retries=2, delay=0)(flaky)

    db.session.add(Order(item="pen"))
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count(Order.id))) == 1  # reads begin a transaction
    assert db.session().in_transaction()
    with pytest.raises(ConnectionError):
        guarded()
    assert flaky.calls == 3


def test_retried_when_the_context_has_no_session_yet(db_app: tuple[Flask, SQLAlchemy]) -> None:
    app, db = db_app
    db.session.remove()
    flaky = Flaky()
    with app.test_request_context(), pytest.raises(ConnectionError):
        retry_on_failure(max_retries=1, delay=0)(flaky)()
    assert flaky.calls == 2
