"""Fixtures for the runtime's tests: real daphne servers and terminals on
the embedded default (SQLite file, in-memory layer), with the misbehaving
commands of tests/e2e/faulty installed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executions.flow import DAPHNE_ARGS
from tests.processes import Process
from tests.scaleout.cluster import Daphne, answers, free_port

DAPHNE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "daphne"
STARTUP_TIMEOUT = 30
#: Quick escalation and reaping, so the tests take seconds, not minutes.
QUICK = {
    "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
    "EXECUTIONS_FORCE_GRACE": "1",
    "EXECUTIONS_HEARTBEAT_INTERVAL": "0.5",
    "EXECUTIONS_HEARTBEAT_TIMEOUT": "3",
}


class Processes:
    """Starts daphne servers and `manage.py` commands on the test database,
    and stops them all by PID."""

    def __init__(self, env: dict[str, str], manage_py: list[str]) -> None:
        self.env = {**env, **QUICK}
        self.manage_py = manage_py
        self.started: list[Process] = []

    def spawn(self, argv: list[str], **overrides: str) -> Process:
        process = Process(argv, {**self.env, **overrides})
        self.started.append(process)
        return process

    def daphne(self, port: int | None = None, **overrides: str) -> Daphne:
        port = port or free_port()
        argv = [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), *DAPHNE_ARGS]
        server = Daphne(
            self.spawn([*argv, "peace_site.asgi:application"], **overrides), port
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not answers(server):
            if server.process.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"daphne did not start:\n{server.process.output}")
            time.sleep(0.1)
        return server

    def manage(self, *args: str, **overrides: str) -> Process:
        return self.spawn([*self.manage_py, *args], **overrides)

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()
            print(
                f"--- {' '.join(process.argv)} (pid {process.popen.pid}, "
                f"exit {process.popen.returncode}) ---\n{process.output}"
            )


@pytest.fixture
def processes(subprocess_env, manage_py) -> Iterator[Processes]:
    started = Processes(subprocess_env, manage_py)
    try:
        yield started
    finally:
        started.stop()
