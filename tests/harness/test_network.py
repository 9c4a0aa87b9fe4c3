"""The link of the network faults: PostgreSQL in a namespace, packets really delayed and lost."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness.network import NAMESPACE_PREFIX, Link, remove_stale_namespaces, unavailable_reason
from harness.stack import REQUEST_TIMEOUT
from tests.support.servers import PostgresServer, libpq_conninfo, skip_or_fail

pytestmark = pytest.mark.postgres

DELAY = 0.3
LOSS = 0.2
SCHEDULING = 0.25
"""Seconds a delayed round trip may take beyond the delay, on a busy machine."""
Connection = psycopg.Connection[tuple[object, ...]]
QUERIES = 60
"""Enough packets that a 20% loss drops some (all 60 pass with a chance of 1 in 650,000)."""


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    if reason := unavailable_reason():
        skip_or_fail(f"no network namespace can be made: {reason}")
    with Link() as made:
        yield made


@pytest.fixture(scope="module")
def server(link: Link) -> Iterator[PostgresServer]:
    with PostgresServer(
        Path(tempfile.gettempdir()), host=link.addresses.server, run_inside=link.run_inside
    ) as started:
        yield started


@pytest.fixture
def connection(link: Link, server: PostgresServer) -> Iterator[Connection]:
    with psycopg.connect(libpq_conninfo(server.url), autocommit=True, connect_timeout=5) as opened:
        try:
            yield opened
        finally:
            link.restore()  # also after a failed test, for the next


def round_trip(connection: Connection) -> float:
    started = time.perf_counter()
    assert connection.execute("SELECT 1").fetchone() == (1,)
    return time.perf_counter() - started


def test_postgresql_listens_in_the_namespace_only(link: Link, server: PostgresServer) -> None:
    listening = subprocess.run(
        [*link.run_inside, "ss", "-Htln", f"sport = :{server.port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{link.addresses.server}:{server.port}" in listening
    root = subprocess.run(
        ["ss", "-Htln", f"sport = :{server.port}"], capture_output=True, text=True, check=True
    )
    assert root.stdout.strip() == ""


def test_a_delayed_link_adds_its_delay_to_each_round_trip_until_restored(
    link: Link, connection: Connection
) -> None:
    assert round_trip(connection) < DELAY / 3
    link.degrade(delay=DELAY)
    delayed = [round_trip(connection) for _ in range(3)]
    assert all(DELAY <= took < DELAY + SCHEDULING for took in delayed), delayed
    assert max(delayed) < REQUEST_TIMEOUT
    link.restore()
    assert round_trip(connection) < DELAY / 3


def test_a_lossy_link_drops_packets_that_tcp_sends_again(
    link: Link, connection: Connection
) -> None:
    dropped = link.dropped()
    link.degrade(loss=LOSS)
    # Every query is answered, however many of its packets the link dropped.
    for number in range(QUERIES):
        assert connection.execute("SELECT %s::int", (number,)).fetchone() == (number,)
    assert link.dropped() > dropped
    link.restore()
    after = link.dropped()
    assert round_trip(connection) < DELAY / 3
    assert link.dropped() == after


def test_closing_the_link_removes_the_namespace_and_its_devices() -> None:
    if reason := unavailable_reason():
        skip_or_fail(f"no network namespace can be made: {reason}")
    link = Link()
    link.open()
    made = {link.namespace, link.app_device}
    assert made <= names_in_use()
    link.close()
    link.close()  # a second close is harmless
    assert not made & names_in_use()


def test_a_namespace_left_by_a_killed_harness_is_removed_and_one_in_use_kept() -> None:
    if reason := unavailable_reason():
        skip_or_fail(f"no network namespace can be made: {reason}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{NAMESPACE_PREFIX}{dead.pid}-stale"
    in_use = f"{NAMESPACE_PREFIX}{os.getpid()}-in-use"
    for name in (stale, in_use):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        remove_stale_namespaces()
        assert stale not in names_in_use()
        assert in_use in names_in_use()
    finally:
        for name in (stale, in_use):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def names_in_use() -> set[str]:
    """The network namespaces and the root namespace's links, by name."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = {line.split()[0] for line in namespaces.splitlines() if line}
    names |= {line.split(": ")[1].split("@")[0] for line in links.splitlines() if ": " in line}
    return names
