"""``make instances``: two instances of the example app that share PostgreSQL and Redis.

Two gunicorn servers of the example app, on two ports, with rate limits, circuit
breakers and the monitor's switch in the same Redis, as two machines behind one
load balancer would run. A client alternates between them:

* the application's limit (``RATELIMIT_APPLICATION``, 100 a minute per client) holds
  across both: of 150 requests of one client, at most 100 are served;
* the outbound breaker, opened on the first instance by failures only it saw,
  refuses on the second within 1 s;
* the monitor turned off through one instance is off in every worker of the
  other within two monitor intervals, and on again the same way.

``--smoke`` is the same run (it takes well under a minute) writing its page elsewhere.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import requests

from harness import report
from harness.stack import Stack

LIMIT = 100
"""The example app's ``RATELIMIT_APPLICATION``: 100 a minute per client."""
REQUESTS = 150
BREAKER_FAILURES = 5
"""The example app's outbound breaker opens after five failed calls in a row."""
BREAKER_TARGET = 1.0
MONITOR_INTERVAL = 1.0
SWITCH_TARGET = 2 * MONITOR_INTERVAL
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
BREAKER_OPEN = "urn:flask-resilience:problem:breaker-open"


@dataclass(frozen=True)
class Result:
    check: str
    figure: str
    target: str
    met: bool


@dataclass(frozen=True)
class Servers:
    """The two instances' URLs and their workers, and the health token."""

    urls: tuple[str, str]
    workers: tuple[Callable[[], list[int]], Callable[[], list[int]]]
    token: str


def shared_limit(servers: Servers) -> Result:
    """One client's requests, alternately to each instance: the limit counts them all."""
    client = {"X-Forwarded-For": "10.200.0.1"}
    served = {url: 0 for url in servers.urls}
    refused = 0
    for url in itertools.islice(itertools.cycle(servers.urls), REQUESTS):
        status = requests.get(f"{url}/login", headers=client, timeout=10).status_code
        if status == 429:
            refused += 1
        elif status == 200:
            served[url] += 1
    total = sum(served.values())
    each = " + ".join(str(count) for count in served.values())
    return Result(
        f"rate limit {LIMIT}/min for one client, {REQUESTS} requests alternating",
        f"{total} served ({each}), {refused} answered 429",
        f"<= {LIMIT} served",
        total <= LIMIT and total + refused == REQUESTS and min(served.values()) > 0,
    )


def logged_in(url: str, address: str) -> requests.Session:
    """A session of the demo's admin, logged in through ``url``: valid on both."""
    session = requests.Session()
    session.headers.update({"X-Forwarded-For": address, "Accept": "application/json"})
    page = session.get(f"{url}/login", timeout=10)
    token = _CSRF.search(page.text)
    if token is None:
        raise RuntimeError(f"no CSRF token on the login page ({page.status_code})")
    answer = session.post(
        f"{url}/login",
        data={
            "email": "alice@acme.test",
            "password": "alice-password",
            "csrf_token": token.group(1),
        },
        allow_redirects=False,
        timeout=10,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"the demo login failed ({answer.status_code})")
    return session


def shared_breaker(servers: Servers) -> Result:
    """The breaker opened on the first instance refuses on the second."""
    first, second = servers.urls
    session = logged_in(first, "10.200.0.2")
    # The example app's partner is unreachable: each call fails after its retries. Each
    # worker counts its own calls, so the first to see five failures opens the breaker,
    # for every worker, through Redis.
    failures = 0
    while failures < 4 * BREAKER_FAILURES:
        answer = session.get(f"{first}/api/outbound", timeout=30)
        if _refused(answer):
            break
        failures += 1
    else:
        raise RuntimeError(f"the breaker did not open after {failures} failed calls")
    opened = time.monotonic()
    refused_after: float | None = None
    while time.monotonic() - opened < 10:
        if _refused(session.get(f"{second}/api/outbound", timeout=30)):
            refused_after = time.monotonic() - opened
            break
        time.sleep(0.05)
    figure = (
        "not refused within 10 s"
        if refused_after is None
        else f"refused {refused_after:.2f} s after the first refused"
    )
    return Result(
        "breaker opened on the first instance, on the second",
        f"{figure} (opened after {failures} failed calls)",
        f"<= {BREAKER_TARGET:g} s",
        refused_after is not None and refused_after <= BREAKER_TARGET,
    )


def _refused(answer: requests.Response) -> bool:
    """A breaker's refusal: 503 with the breaker-open problem type."""
    return answer.status_code == 503 and _problem_type(answer) == BREAKER_OPEN


def _problem_type(answer: requests.Response) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None


def shared_switch(servers: Servers, action: str, state: str) -> Result:
    """``POST /health/monitoring/<action>`` on the first instance; the seconds until every
    worker of the second reports its monitor ``state``."""
    first, second = servers.urls
    auth = {"Authorization": f"Bearer {servers.token}"}
    requests.post(f"{first}/health/monitoring/{action}", headers=auth, timeout=10)
    switched = time.monotonic()
    workers = set(servers.workers[1]())
    seen: dict[int, str] = {}
    took: float | None = None
    while time.monotonic() - switched < 10 * MONITOR_INTERVAL:
        detail = requests.get(f"{second}/health/detailed", headers=auth, timeout=10).json()
        monitor = detail["monitor"]
        seen[monitor["pid"]] = monitor["state"]
        if workers <= {pid for pid, value in seen.items() if value == state}:
            took = time.monotonic() - switched
            break
    figure = (
        f"every worker of the second {state} after {took:.2f} s"
        if took is not None
        else f"not every worker {state} within {10 * MONITOR_INTERVAL:g} s: {seen}"
    )
    return Result(
        f"monitor {action} through the first instance",
        figure,
        f"<= {SWITCH_TARGET:g} s (2 monitor intervals)",
        took is not None and took <= SWITCH_TARGET,
    )


def run() -> list[Result]:
    with closing(Stack(workers=2)) as stack:
        stack.start_servers()
        stack.extra_environment.update(
            FLASK_RESILIENCE_CIRCUIT_STORAGE_URI=stack.redis.url,
            FLASK_RESILIENCE_MONITOR_REDIS_URL=stack.redis.url,
            FLASK_RESILIENCE_MONITOR_INTERVAL=str(MONITOR_INTERVAL),
        )
        stack.start_app()
        with stack.another_instance() as second:
            servers = Servers(
                (stack.url, second.url),
                (stack.worker_pids, second.worker_pids),
                stack.health_token,
            )
            return [
                shared_limit(servers),
                shared_breaker(servers),
                shared_switch(servers, "stop", "stopped"),
                shared_switch(servers, "start", "running"),
            ]


def table_text(results: Sequence[Result]) -> str:
    return report.table(
        ["check", "figure", "target", "met"],
        [[r.check, r.figure, r.target, report.verdict(r.met)] for r in results],
    )


def page_body(results: Sequence[Result]) -> str:
    return (
        "Two gunicorn instances of the example app (2 sync workers each) on two\n"
        "loopback ports share a throwaway PostgreSQL and Redis: rate limits\n"
        "(`RATELIMIT_STORAGE_URI`), circuit breakers (`RESILIENCE_CIRCUIT_STORAGE_URI`)\n"
        "and the monitor's switch (`RESILIENCE_MONITOR_REDIS_URL`, a 1 s interval) are\n"
        "in Redis. One client alternates between the instances, as a round-robin load\n"
        "balancer would send it.\n\n" + table_text(results) + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.instances", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="the same run, for the tests")
    parser.add_argument("--output", type=Path, default=report.DOCS, help="folder of instances.md")
    args = parser.parse_args(argv)
    results = run()
    print(table_text(results))
    command = "python -m harness.instances" + (" --smoke" if args.smoke else "")
    page = report.write_page(
        "instances",
        "Two instances, one Redis",
        page_body(results),
        command,
        folder=args.output,
    )
    print(f"Wrote {page}")
    missed = [result.check for result in results if not result.met]
    if missed:
        print(f"Targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
