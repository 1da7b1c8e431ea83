"""Fixtures for scale-out tests: a real redis-server, and daphne servers,
workers and terminals started on it per test (see `cluster.py`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.scaleout.cluster import Cluster, RedisServer


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    """A redis-server on 127.0.0.1 and a free port; `.url`, and `.stop()`,
    `.start()`, `.restart()` on the same port for fault tests."""
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server is missing: install Debian's redis-server"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(executable, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        # pytest shows what a test printed only when it failed.
        print("--- redis-server ---\n" + "\n".join(server.logs))


@pytest.fixture
def cluster(redis_server, subprocess_env, manage_py) -> Iterator[Cluster]:
    """Start `cluster.daphne(**env)`, `cluster.worker(**env)` and
    `cluster.execute(*args, **env)` on the test database and `redis_server`;
    all are stopped at the end, their output shown if the test failed."""
    processes = Cluster(redis_server, subprocess_env, manage_py)
    try:
        yield processes
    finally:
        processes.stop()
