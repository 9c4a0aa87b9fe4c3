"""What the simulated users of the example app do, for locust.

Each user logs in through the form (scrypt and all), then lists documents,
opens one, reads the statistics, checks who it is and now and then uploads a
file, with one to three seconds between actions. Two load balancers poll
``/health/ready`` once a second each.

Every request carries what a load balancer in front of the app would add: the
user's own ``X-Forwarded-For`` address (the app trusts one proxy, so each user
has its own rate limits, as real clients have) and an ``X-Request-Start`` stamp
(the app sheds requests that waited too long to be served).

With ``HARNESS_REQUEST_LOG`` set, every request is appended to that file as a
CSV row (start time, name, status, milliseconds, error), which the harnesses
read to follow the run second by second.
"""

from __future__ import annotations

import csv
import itertools
import os
import random
import re
import time
import uuid
from typing import Any, TextIO

from locust import between, constant, events, task
from locust.contrib.fasthttp import FastHttpUser

ACCOUNTS = ("alice@acme.test", "bob@acme.test", "dave@globex.test")
"""Accounts that may upload: an admin and a member of Acme, the admin of Globex."""

_addresses = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in itertools.count(1))
_CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')
_log: TextIO | None = None
_writer: Any = None


@events.init.add_listener
def open_request_log(**_: Any) -> None:
    global _log, _writer
    path = os.environ.get("HARNESS_REQUEST_LOG")
    if path:
        _log = open(path, "a", newline="", buffering=1)  # noqa: SIM115 (open for the run)
        _writer = csv.writer(_log)


@events.request.add_listener
def record_request(
    name: str,
    response_time: float,
    response: Any,
    exception: BaseException | None,
    start_time: float,
    **_: Any,
) -> None:
    if _writer is None:
        return
    status = getattr(response, "status_code", 0) or 0
    error = "" if exception is None or status else type(exception).__name__
    _writer.writerow([f"{start_time:.3f}", name, status, f"{response_time:.1f}", error])


@events.quitting.add_listener
def close_request_log(**_: Any) -> None:
    if _log is not None:
        _log.close()


class DocumentsUser(FastHttpUser):
    wait_time = between(1, 3)
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.headers = {"X-Forwarded-For": next(_addresses), "Accept": "application/json"}
        self.email = random.choice(ACCOUNTS)
        self.logged_in = False
        self.document_ids: list[int] = []
        self.log_in()

    def log_in(self) -> None:
        with self.client.get(
            "/login", headers=self.stamped(), name="/login", catch_response=True
        ) as page:
            match = _CSRF.search(page.content or b"")
            if match is None:
                page.failure(f"no CSRF token (status {page.status_code})")
                return
        form = {
            "email": self.email,
            "password": f"{self.email.split('@')[0]}-password",
            "csrf_token": match.group(1).decode(),
        }
        with self.client.post(
            "/login",
            data=form,
            headers=self.stamped(),
            name="/login [POST]",
            allow_redirects=False,
            catch_response=True,
        ) as answer:
            self.logged_in = answer.status_code == 302
            if answer.status_code == 302:
                answer.success()

    def stamped(self) -> dict[str, str]:
        """The headers of the next request, stamped with the time it is sent."""
        return {**self.headers, "X-Request-Start": f"t={time.time():.3f}"}

    def get(self, path: str, name: str) -> Any:
        return self.client.get(path, headers=self.stamped(), name=name)

    @task(5)
    def list_documents(self) -> None:
        if not self.logged_in:
            self.log_in()
            return
        answer = self.get(f"/api/documents?page={random.randint(1, 10)}", "/api/documents")
        if answer.status_code == 200:
            self.document_ids = [item["id"] for item in answer.json()["items"]]

    @task(2)
    def open_document(self) -> None:
        if self.logged_in and self.document_ids:
            doc_id = random.choice(self.document_ids)
            self.get(f"/api/documents/{doc_id}", "/api/documents/<id>")

    @task(2)
    def statistics(self) -> None:
        if self.logged_in:
            self.get("/api/stats", "/api/stats")

    @task(1)
    def who_am_i(self) -> None:
        if self.logged_in:
            self.get("/api/me", "/api/me")

    @task(1)
    def upload(self) -> None:
        if not self.logged_in:
            return
        boundary = uuid.uuid4().hex
        content = f"Minutes of the meeting {uuid.uuid4()}\n".encode() * 20
        body = (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="file"; filename="minutes.txt"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {**self.stamped(), "Content-Type": f"multipart/form-data; boundary={boundary}"}
        # geventhttpclient sends bytes as they are; locust's annotation only names str.
        self.client.post(
            "/api/documents",
            data=body,  # type: ignore[arg-type]
            headers=headers,
            name="/api/documents [POST]",
        )


class LoadBalancer(FastHttpUser):
    """A load balancer's health check: one readiness probe a second."""

    fixed_count = 2
    wait_time = constant(1)
    network_timeout = 5.0

    @task
    def probe(self) -> None:
        self.client.get("/health/ready", name="/health/ready")
