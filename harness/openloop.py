"""An open-loop load generator: requests leave on schedule, answered or not.

A closed loop (locust's users, a benchmark's threads) sends a request when the
previous one is answered, so an overloaded server slows its own load down and
hides how long clients would have waited. Here the i-th request of a run at
``rate`` per second is due at ``start + i / rate`` and is sent then on a new
connection, however many are still waiting. Its latency counts from that
scheduled moment, which is also the ``X-Request-Start`` stamp it carries, as a
load balancer stamps the moment a request reached it: a generator that falls
behind its schedule shows up as latency, not as a lighter load.

Each request is one HTTP/1.1 exchange with ``Connection: close`` (gunicorn's
sync workers close every connection anyway), its sending side shut once the
request is out (see :class:`_Exchange`), from one of several loopback
source addresses so that tens of thousands of connections a minute do not run
out of local ports, and with one of :data:`CLIENTS` ``X-Forwarded-For``
addresses, as many clients behind one proxy.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

CLIENTS = 256
SOURCE_ADDRESSES = tuple(f"127.0.0.{n}" for n in range(2, 18))
TIMEOUT = 10.0
"""Seconds a client waits for the whole answer before it gives up."""

#: ``status`` for a request that got no answer within the timeout, and for one whose
#: connection failed (refused, reset, closed before a status line).
TIMED_OUT = 0
FAILED = -1


@dataclass(frozen=True)
class Result:
    scheduled: float
    """Epoch seconds at which the request was due."""
    latency: float
    """Seconds from ``scheduled`` to the end of the answer (or to the give-up)."""
    status: int
    retry_after: bool
    lag: float = 0.0
    """Seconds the generator sent it after it was due: its own shortfall, 0 when on time."""

    @property
    def end(self) -> float:
        return self.scheduled + self.latency

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _Exchange(asyncio.Protocol):
    """One request on its own connection, half-closed once sent, closed once answered.

    Gunicorn's workers linger after each answer until the client closes (RFC 9112's
    graceful close), so a client slow to close costs a worker its time. A proxy in
    front, written in C on a machine of its own, closes within microseconds; this
    client shares the server's cores and its event loop took 2 to 4 ms under load,
    worker time that no deployment spends. So it says at once that it will send
    nothing more (the request asks ``Connection: close``): the worker's linger ends
    as soon as its answer is out.
    """

    def __init__(self, request: bytes, answered: asyncio.Future[tuple[bytes, float]]) -> None:
        self.request = request
        self.answered = answered
        self.received = bytearray()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)
        transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.received += data
        if _complete(self.received):
            self._finish()

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            if exc is not None:
                self.answered.set_exception(exc)
            else:
                self.answered.set_result((bytes(self.received), time.time()))

    def _finish(self) -> None:
        if not self.answered.done():
            self.answered.set_result((bytes(self.received), time.time()))
        if self.transport is not None:
            self.transport.close()


def _complete(received: bytearray) -> bool:
    """Whether ``received`` holds a whole answer: its head and a body of Content-Length."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        return False
    for line in bytes(received[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(received) - end - 4 >= int(value)
    return False  # no length: the answer ends when the server closes


async def _exchange(
    host: str, port: int, path: str, index: int, scheduled: float, lag: float
) -> Result:
    client = index % CLIENTS
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"X-Request-Start: t={scheduled:.6f}\r\n"
        f"X-Forwarded-For: 10.0.{client // 256}.{client % 256}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    source = SOURCE_ADDRESSES[index % len(SOURCE_ADDRESSES)]
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[tuple[bytes, float]] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: _Exchange(request, answered), host, port, local_addr=(source, 0)
    )
    try:
        answer, finished = await answered
    finally:
        transport.close()
    head, _, _ = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return Result(scheduled, finished - scheduled, FAILED, False, lag)
    retry_after = any(line.lower().startswith(b"retry-after:") for line in lines[1:])
    return Result(scheduled, finished - scheduled, int(parts[1]), retry_after, lag)


async def _one(host: str, port: int, path: str, index: int, scheduled: float) -> Result:
    lag = max(0.0, time.time() - scheduled)
    exchange = _exchange(host, port, path, index, scheduled, lag)
    try:
        return await asyncio.wait_for(exchange, TIMEOUT - lag)
    except (asyncio.TimeoutError, TimeoutError):
        return Result(scheduled, TIMEOUT, TIMED_OUT, False, lag)
    except OSError:
        return Result(scheduled, time.time() - scheduled, FAILED, False, lag)


async def _run(
    host: str, port: int, path: str, rate: float, seconds: float, start: float
) -> list[Result]:
    count = int(rate * seconds)
    tasks = []
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(_one(host, port, path, index, scheduled)))
    return list(await asyncio.gather(*tasks))


def run(
    host: str,
    port: int,
    path: str,
    rate: float,
    seconds: float,
    *,
    start: float | None = None,
) -> list[Result]:
    """Send ``rate`` requests a second for ``seconds``, from ``start`` (epoch, default now).

    Returns once every request is answered or given up on: up to :data:`TIMEOUT`
    after the last one is sent.
    """
    begin = time.time() if start is None else start
    return asyncio.run(_run(host, port, path, rate, seconds, begin))


def run_with_probe(
    host: str,
    port: int,
    path: str,
    rate: float,
    seconds: float,
    probe_rate: float,
    probe_seconds: float,
) -> tuple[float, list[Result], list[Result]]:
    """The load, then a steady probe from the moment the load stops.

    Returns the moment the load stopped (epoch seconds), its results and the probe's.
    """

    async def both() -> tuple[float, list[Result], list[Result]]:
        start = time.time()
        stop = start + seconds
        load, probe = await asyncio.gather(
            _run(host, port, path, rate, seconds, start),
            _run(host, port, path, probe_rate, probe_seconds, stop),
        )
        return stop, load, probe

    return asyncio.run(both())
