"""A logged-in client that tells whether every endpoint of the example app is healthy."""

from __future__ import annotations

import itertools
import re

import requests

from harness.stack import Stack

_rounds = itertools.count()  # next() on it is atomic: probes in several threads share it

HEALTHY_MILLISECONDS = 1000
"""An endpoint that answers 200 more slowly than this still counts as unhealthy."""

ENDPOINTS = ("/health/live", "/health/ready", "/api/documents", "/api/stats", "/api/me")


class Prober:
    def __init__(self, stack: Stack, email: str = "carol@acme.test") -> None:
        self.stack = stack
        self.email = email
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json"})
        self.new_address()

    def new_address(self) -> None:
        """A forwarded address of the probes' own, a fresh one for each round of requests:
        their rate limits are not the users', and polling every 0.1 s never runs into one."""
        n = next(_rounds) % 65534 + 1
        self.session.headers["X-Forwarded-For"] = f"10.255.{n >> 8}.{n & 255}"

    def log_in(self) -> bool:
        try:
            page = self.session.get(self.stack.url + "/login", timeout=5)
            match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            if match is None:
                return False
            form = {
                "email": self.email,
                "password": f"{self.email.split('@')[0]}-password",
                "csrf_token": match.group(1),
            }
            answer = self.session.post(
                self.stack.url + "/login", data=form, allow_redirects=False, timeout=5
            )
        except requests.RequestException:
            return False
        return answer.status_code == 302

    def status(self, path: str, timeout: float = 5) -> tuple[int, float]:
        """The status and milliseconds of one GET; status 0 when nothing answered."""
        try:
            answer = self.session.get(self.stack.url + path, timeout=timeout)
        except requests.RequestException:
            return 0, timeout * 1000
        return answer.status_code, answer.elapsed.total_seconds() * 1000

    def unhealthy(self) -> list[str]:
        """The endpoints that do not answer 200 promptly; empty when all do."""
        self.new_address()
        failing = []
        for path in ENDPOINTS:
            status, milliseconds = self.status(path)
            if status != 200 or milliseconds > HEALTHY_MILLISECONDS:
                failing.append(f"{path} {status}")
        return failing

    def all_healthy(self) -> bool:
        return not self.unhealthy()
