"""Fixtures for end-to-end tests: a real daphne process serving the project
on the file-backed test database, and headless Chromium driven by Playwright.

Reusable by any browser test: `daphne_url` (the server's base URL),
`daphne` (the server itself, to stop and start it), `browser` (Chromium),
`log_in(page, user)` (through the login page) and `artifacts` (where
screenshots go).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executions.flow import DAPHNE_ARGS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PASSWORD = "correct horse battery staple"
STARTUP_TIMEOUT = 30
STOP_TIMEOUT = 10


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell at
    teardown whether the test failed (and show the server's output)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def allow_sync_orm_beside_playwright(monkeypatch):
    # Between its calls, Playwright's sync API leaves its event loop marked
    # as running in this thread, so Django takes the test's own ORM calls
    # (creating users, reading rows, flushing the database) for calls from
    # async code and refuses them. They are sync calls: allow them here only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"daphne exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    pytest.fail(f"daphne did not answer within {STARTUP_TIMEOUT}s:\n{log.read_text()}")


class Daphne:
    """A daphne process serving the project on 127.0.0.1. It keeps its port
    across `stop()` and `start()`, so a test can take the server away from
    the browsers watching it and bring it back."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("daphne")),
                    "-b",
                    "127.0.0.1",
                    "-p",
                    port,
                    *DAPHNE_ARGS,
                    "peace_site.asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        _wait_until_up(f"{self.url}/accounts/login/", self.process, self.log)

    def stop(self) -> None:
        """SIGTERM (daphne drains its runs), then SIGKILL after a timeout."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def daphne(request, subprocess_env, tmp_path) -> Iterator[Daphne]:
    """A running daphne sharing the test database (committed data:
    `subprocess_env` implies transactional_db). Prints its output if the test
    failed."""
    env = dict(subprocess_env)
    # The server must keep Django's async-safety checks (see the fixture above).
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    server = Daphne(env, tmp_path / "daphne.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        call = getattr(request.node, "report_call", None)
        if call is None or call.failed:
            print(f"--- daphne output ({server.url}) ---\n{server.log.read_text()}")


@pytest.fixture
def daphne_url(daphne) -> str:
    """The base URL of a running daphne, e.g. `http://127.0.0.1:41234`."""
    return daphne.url


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from Debian. Module-scoped, not session-scoped: while
    Playwright's sync API is alive its loop counts as running in this thread,
    which would break the async tests of other modules."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make test` installs it (Debian chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def log_in(daphne_url) -> Callable:
    """`log_in(page, user)`: sign in through the login page, as a person would."""

    def log_in(page, user, password: str = PASSWORD) -> None:
        page.goto(f"{daphne_url}/accounts/login/")
        page.fill("#id_username", user.get_username())
        page.fill("#id_password", password)
        with page.expect_navigation():
            page.click("button[type=submit]")
        if "/accounts/login/" in page.url:
            pytest.fail(f"could not log in as {user.get_username()}")

    return log_in


@pytest.fixture
def artifacts() -> Path:
    """Where browser tests save screenshots (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
