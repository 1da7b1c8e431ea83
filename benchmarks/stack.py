"""The site the scenarios measure: real daphne serving the product (with the
probes, `benchmarks/asgi.py`), optionally Redis and a worker, a logged-in
HTTP session and websocket clients — all on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from websockets.asyncio.client import ClientConnection, connect

from benchmarks import probe
from benchmarks.support import (
    DAPHNE,
    PYTHON,
    Collector,
    HttpSession,
    Processes,
    free_port,
    wait_for_port,
)
from executions.flow import DAPHNE_ARGS

USERNAME = "bench"
PASSWORD = "bench-password-not-secret"
#: A cooperative step that checks the interrupt every 10 ms and runs for ten
#: minutes unless interrupted.
LONG_STEP = {"count": 1, "seconds": 600, "ticks": 60000}
#: Our settings, as tuned for production, minus what would skew a benchmark.
CLEARED = ("REDIS_URL", "EXECUTIONS_", "DATABASE_URL", "DJANGO_", "PEACE_BENCH_")


class Ended(RuntimeError):
    """The execution had already ended when the benchmark interrupted it."""


@dataclass
class Context:
    """What every scenario of one run shares."""

    scratch: Path
    collector: Collector
    quick: bool
    database_url: str
    redis_url: str = ""
    results: dict = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(CLEARED)
        }
        env.update(
            DATABASE_URL=self.database_url,
            DJANGO_SETTINGS_MODULE="peace_site.settings",
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            **{probe.COLLECTOR: self.collector.address},
        )
        env.update(extra)
        return env

    def samples(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass
class Site:
    port: int
    context: Context
    env: dict[str, str]
    http: HttpSession
    processes: Processes
    daphne: object

    @property
    def collector(self) -> Collector:
        return self.context.collector

    async def websocket(self, path: str) -> ClientConnection:
        return await connect(
            f"ws://127.0.0.1:{self.port}{path}",
            additional_headers={
                "Cookie": f"sessionid={self.http.cookies['sessionid']}"
            },
            origin=f"http://127.0.0.1:{self.port}",
            max_size=None,
            open_timeout=60,
            ping_interval=None,
        )

    async def watch(self, key: str) -> ClientConnection:
        """A watcher of one execution, past its snapshot."""
        socket = await self.websocket(f"/ws/executions/{uuid.UUID(key)}/")
        await socket.recv()
        return socket

    async def start(self, params: dict | None = None, cmd: str = "demo.steps") -> str:
        """Start an execution through the API; its UUID hex."""
        key, _, _ = await self.start_timed(params, cmd)
        return key

    async def start_timed(
        self, params: dict | None = None, cmd: str = "demo.steps"
    ) -> tuple[str, float, float]:
        """Start an execution through the API: its UUID hex, the time just
        before the request was written, and the time its 201 came back."""

        def call() -> tuple[str, float, float]:
            sent = time.time()
            status, body = self.http.post_json(
                "/api/executions/", {"cmd": cmd, "params": params or LONG_STEP}
            )
            replied = time.time()
            if status != 201:
                raise RuntimeError(f"start failed: {status} {body}")
            return uuid.UUID(body["id"]).hex, sent, replied

        return await asyncio.to_thread(call)

    async def wait(self, kind: str, key: str, timeout: float = 60) -> dict:
        return await asyncio.to_thread(self.collector.wait, kind, key, timeout)

    async def start_joined(
        self, params: dict | None = None, cmd: str = "demo.steps"
    ) -> str:
        """Start an execution and wait until it is steady: its supervisor
        hears pushes (it joined the control group) and its engine, in the
        execution process, runs its first step."""
        key = await self.start(params, cmd)
        await self.wait("joined", key)
        await self.wait("running", key)
        return key

    async def interrupt_api(
        self, key: str, *, force: bool = False
    ) -> tuple[float, float]:
        """The API door: (time sent, time the 202 came back)."""

        def call() -> tuple[float, float]:
            sent = time.time()
            status, body = self.http.post_json(
                f"/api/executions/{uuid.UUID(key)}/interrupt/",
                {"force": True} if force else {},
            )
            if status == 409 and body.get("error") == "not_running":
                raise Ended(body.get("message", ""))
            if status != 202:
                raise RuntimeError(f"interrupt failed: {status} {body}")
            return sent, time.time()

        return await asyncio.to_thread(call)

    async def stop(self, key: str, *, force: bool = False) -> None:
        """Interrupt an execution that is no sample (clean-up), and wait
        until its supervisor is through; one that already ended is fine."""
        with contextlib.suppress(Ended):
            await self.interrupt_api(key, force=force)
        await self.wait("done", key)


async def desync() -> None:
    """A random pause, so a door is used at a random phase of the step's
    10 ms checkpoint loop and of the supervisor's 0.5 s database poll."""
    await asyncio.sleep(random.uniform(0.01, 0.03))


@asynccontextmanager
async def site(
    context: Context,
    name: str,
    *,
    redis: bool = False,
    workers: int = 0,
    sends: bool = False,
    extra_env: dict[str, str] | None = None,
    app: str = "benchmarks.asgi:application",
) -> AsyncIterator[Site]:
    """Daphne (and `workers` probed `runworker executions` processes) with
    the in-memory layer, or with Redis when `redis` is set."""
    extra = dict(extra_env or {})
    if redis:
        extra.update(REDIS_URL=context.redis_url)
    if workers:
        extra.setdefault("EXECUTIONS_RUNNER", "worker")
        extra.setdefault("EXECUTIONS_WORKER_CONCURRENCY", "4")
    if sends:
        extra[probe.SENDS] = "1"
    env = context.env(**extra)
    port = free_port()
    with Processes(context.scratch) as processes:
        for number in range(workers):
            processes.start(
                f"{name}-worker{number}",
                [PYTHON, "-m", "benchmarks.harness", "runworker", "executions"],
                env,
            )
        daphne = processes.start(
            f"{name}-daphne",
            [DAPHNE, "-b", "127.0.0.1", "-p", str(port), *DAPHNE_ARGS, app],
            env,
        )
        wait_for_port(port, daphne, timeout=60)
        http = HttpSession(port)
        await asyncio.to_thread(http.login, USERNAME, PASSWORD)
        began = time.time()
        try:
            yield Site(port, context, env, http, processes, daphne)
        finally:
            http.close()
            context.results.setdefault("unrequested", {})[name] = unrequested(
                context.database_url, began
            )


def unrequested(database_url: str, since: float) -> list[int]:
    """[ended interrupted with no interrupt on the row, all started] since
    `since`: runs the runtime stopped by itself, which no door asked for."""
    path = urlparse(database_url).path
    moment = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as connection:
        count, total = connection.execute(
            "SELECT SUM(status = 'interrupted' AND interrupt_requested_at IS NULL"
            " AND interrupt_source = ''), COUNT(*) FROM executions_execution"
            " WHERE created_at >= ?",
            (moment,),
        ).fetchone()
    return [count or 0, total]
