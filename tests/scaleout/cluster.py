"""Real processes for scale-out tests: a redis-server on 127.0.0.1, daphne
servers, `runworker executions` workers, Celery workers, Django Tasks'
`db_worker`s and `execute` terminals sharing the test database and one
Redis; and a logged-in user who talks to any server over HTTP and
websockets, as a browser or a script would."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import redis
import websockets.asyncio.client
from websockets.sync.client import ClientConnection, connect

from executions.flow import DAPHNE_ARGS
from executions.models import TERMINAL
from executions.runtime import groups
from tests.processes import Process

#: Runners that must hear an interrupt by push re-read the durable request
#: this rarely (seconds): once as they start, then not for this long.
SLOW_POLL = 30
#: A push lands in milliseconds; this generous bound only tells it from a poll.
PUSH_BOUND = timedelta(seconds=8)
#: A run that only an interrupt ends within a test: three steps of 30 s, each
#: checking for an interrupt every 10 ms.
LONG_RUN = {"count": 3, "seconds": 30, "ticks": 3000}
ALL_STEPS_OF_LONG_RUN = ["step-1", "step-2", "step-3"]

DAPHNE = Path(sys.executable).with_name("daphne")
STARTUP_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def layer_channel(group: str) -> str:
    """The Redis channel `RedisPubSubChannelLayer` (default prefix `asgi`)
    subscribes a group member to: counting its subscribers tells whether a
    runner or a server listens to that group yet."""
    return f"asgi__group__{group}"


class RedisServer:
    """A redis-server on 127.0.0.1 that a test may stop and start again on
    the same port, as an operator restarting Redis would."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None
        #: The output of each run of the server so far.
        self.logs: list[str] = []

    def start(self) -> None:
        self.process = Process(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            dict(os.environ),
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if self.process.popen.poll() is not None:
                    raise AssertionError(
                        f"redis-server exited:\n{self.process.output}"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.logs.append(self.process.output)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL it, as a crash or the kernel's OOM killer would: no
        goodbye to its clients, and what it held is gone."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.wait()
            self.logs.append(self.process.output)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def subscribers(self, channel: str) -> int:
        with self.client() as client:
            return dict(client.pubsub_numsub(channel))[channel]

    def wait_for_subscribers(
        self, channel: str, count: int = 1, timeout: float = 10
    ) -> None:
        deadline = time.monotonic() + timeout
        while (seen := self.subscribers(channel)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{seen} subscribers to {channel} after {timeout}s, not {count}"
                )
            time.sleep(0.02)

    def wait_for_runner(self, execution_id: str, timeout: float = 10) -> None:
        """Until the execution's runner listens for pushed interrupts."""
        self.wait_for_subscribers(
            layer_channel(groups.control_group(execution_id)), timeout=timeout
        )


@dataclass
class Daphne:
    """A daphne server of the cluster."""

    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Cluster:
    """Starts the project's processes on one Redis and the test database,
    each with per-process setting overrides, and stops them all by PID."""

    def __init__(
        self, redis_server: RedisServer, env: dict[str, str], manage_py: list[str]
    ) -> None:
        self.redis = redis_server
        self.env = {**env, "REDIS_URL": redis_server.url}
        self.manage_py = manage_py
        self.processes: list[Process] = []

    def spawn(self, argv: list[str], overrides: dict[str, str]) -> Process:
        process = Process(argv, {**self.env, **overrides})
        self.processes.append(process)
        return process

    def daphne(self, port: int | None = None, **overrides: str) -> Daphne:
        """A daphne, on `port` if given (a restart where it was), returned
        once it serves."""
        port = port or free_port()
        server = Daphne(
            self.spawn(
                [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), *DAPHNE_ARGS]
                + ["peace_site.asgi:application"],
                overrides,
            ),
            port,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not answers(server):
            if server.process.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"daphne did not start:\n{server.process.output}")
            time.sleep(0.1)
        return server

    def worker(self, **overrides: str) -> Process:
        """A worker, returned once it listens for work."""
        listening = self.redis.subscribers(groups.WORKER_CHANNEL)
        process = self.spawn(
            [*self.manage_py, "runworker", groups.WORKER_CHANNEL], overrides
        )
        try:
            self.redis.wait_for_subscribers(
                groups.WORKER_CHANNEL, listening + 1, timeout=STARTUP_TIMEOUT
            )
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{process.output}") from None
        return process

    def celery_worker(self, **overrides: str) -> Process:
        """`celery -A peace_site worker` with a prefork pool of two, returned
        once it consumes from the broker."""
        process = self.spawn(
            [sys.executable, "-m", "celery", "-A", "peace_site", "worker"]
            + ["--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO"]
            + ["--hostname", f"w{len(self.processes)}@%h"]
            # Nothing here talks to other workers: start at once.
            + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
            {"EXECUTIONS_RUNNER": "celery", **overrides},
        )
        process.wait_for(" ready.", timeout=STARTUP_TIMEOUT)
        return process

    def db_worker(self, **overrides: str) -> Process:
        """`manage.py db_worker` of django-tasks-db, looking for tasks every
        0.1 s, returned once it does."""
        process = self.spawn(
            [*self.manage_py, "db_worker", "--interval", "0.1"]
            + ["--no-startup-delay", "--no-reload"],
            {"EXECUTIONS_RUNNER": "tasks", **overrides},
        )
        process.wait_for("Starting worker", timeout=STARTUP_TIMEOUT)
        return process

    def manage(self, *args: str, **overrides: str) -> Process:
        """Any management command, on this cluster."""
        return self.spawn([*self.manage_py, *args], overrides)

    def execute(self, *args: str, **overrides: str) -> Process:
        return self.spawn([*self.manage_py, "execute", *args], overrides)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
            # pytest shows what a test printed only when it failed.
            print(
                f"--- {' '.join(process.argv)} (pid {process.popen.pid}, "
                f"exit {process.popen.returncode}) ---\n{process.output}"
            )


def answers(server: Daphne) -> bool:
    """Whether a daphne serves its login page."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
    try:
        connection.request("GET", "/accounts/login/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Session:
    """A logged-in user: their session cookie on every request, and the
    CSRF token their POSTs need, against whichever server they pick."""

    def __init__(self, user, sessionid: str) -> None:
        self.user = user
        self.cookies = {"sessionid": sessionid}
        self._sockets = contextlib.ExitStack()

    def request(
        self,
        server: Daphne,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Response:
        headers = {"Origin": server.url}
        if method != "GET":
            headers["X-CSRFToken"] = self.csrf_token(server)
        headers["Cookie"] = "; ".join(
            f"{name}={value}" for name, value in self.cookies.items()
        )
        if content_type:
            headers["Content-Type"] = content_type
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            result = Response(response.status, response.headers, response.read())
        finally:
            connection.close()
        for header in result.headers.get_all("Set-Cookie") or ():
            self.cookies.update(
                (name, morsel.value) for name, morsel in SimpleCookie(header).items()
            )
        return result

    def csrf_token(self, server: Daphne) -> str:
        if "csrftoken" not in self.cookies:
            # The API sets the cookie on any answer, as a script's first GET.
            self.request(server, "GET", "/api/executions/")
        return self.cookies["csrftoken"]

    def get_json(self, server: Daphne, path: str) -> Response:
        return self.request(server, "GET", path)

    def post_json(self, server: Daphne, path: str, data: dict) -> Response:
        return self.request(
            server, "POST", path, json.dumps(data).encode(), "application/json"
        )

    def post_form(self, server: Daphne, path: str, data: dict) -> Response:
        return self.request(
            server,
            "POST",
            path,
            urllib.parse.urlencode(data, doseq=True).encode(),
            "application/x-www-form-urlencoded",
        )

    def start(self, server: Daphne, cmd: str, **params: Any) -> dict:
        """Start an execution through the API; its snapshot."""
        response = self.post_json(
            server, "/api/executions/", {"cmd": cmd, "params": params}
        )
        assert response.status == 201, response.body
        return response.json()

    def wait_until_finished(
        self, server: Daphne, execution_id: str, timeout: float = 10
    ) -> dict:
        """The execution's snapshot once the API says it has finished."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get_json(server, f"/api/executions/{execution_id}/")
            snapshot = response.json()
            if snapshot["status"] in TERMINAL:
                return snapshot
            if time.monotonic() > deadline:
                raise AssertionError(f"still {snapshot['status']} after {timeout}s")
            time.sleep(0.05)

    def watch(self, server: Daphne, execution_id: str = "") -> Watcher:
        """A websocket on one execution, or with no ID on the list."""
        path = f"/ws/executions/{execution_id}/" if execution_id else "/ws/executions/"
        return Watcher(
            self._sockets.enter_context(
                connect(
                    f"ws://127.0.0.1:{server.port}{path}",
                    origin=server.url,
                    additional_headers={
                        "Cookie": f"sessionid={self.cookies['sessionid']}"
                    },
                    proxy=None,
                    max_queue=None,
                )
            )
        )

    def close(self) -> None:
        self._sockets.close()


class Watcher:
    """A browser's websocket: its first message, the snapshot, then events,
    all kept in `events` in the order they came."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.events: list[dict] = []
        self.snapshot = self.next(timeout=10)
        assert self.snapshot["type"] == "snapshot", self.snapshot

    def next(self, timeout: float) -> dict:
        event = json.loads(self.connection.recv(timeout=timeout))
        self.events.append(event)
        return event

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 10) -> dict:
        """The first event from now on that `predicate` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.next(timeout=max(remaining, 0))
            except TimeoutError:
                raise AssertionError(
                    f"no such event within {timeout}s; got: {self.events}"
                ) from None
            if predicate(event):
                return event

    def step(self, step_id: str, status: str, timeout: float = 10) -> dict:
        """The next `step` event of `step_id` in `status`: its step."""
        return self.wait_for(
            lambda event: (
                event["type"] == "step"
                and event["step"]["id"] == step_id
                and event["step"]["status"] == status
            ),
            timeout,
        )["step"]

    def finished(self, timeout: float = 10) -> dict:
        """The execution as the `finished` event reports it."""
        return self.wait_for(lambda event: event["type"] == "finished", timeout)[
            "execution"
        ]


def runner_pid(runner: str) -> int:
    """The process ID in an execution's `runner` (`host:pid:suffix`)."""
    return int(runner.split(":")[1])


@dataclass
class CrowdMember:
    """One socket of a crowd: what it heard (across reconnects) and the
    close codes it saw."""

    server: Daphne
    events: list[dict] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    connected: bool = False

    @property
    def status(self) -> str | None:
        """The execution's status as the last snapshot or status event says."""
        for event in reversed(self.events):
            if "execution" in event:
                return event["execution"]["status"]
        return None

    def count(self, kind: str) -> int:
        return sum(event["type"] == kind for event in self.events)


class Crowd:
    """Hundreds of watchers of one execution, as browser tabs are: on an
    asyncio loop of their own (a thread), each reconnects after a close (but
    4403 and 4404) as the page's script does, and starts again from the
    snapshot it gets. Sync tests poll it with `wait_until`."""

    #: A new socket after a close, as the page does (it backs off from 0.5 s).
    RECONNECT_DELAY = 0.5
    #: Handshakes in flight at once: daphne takes them all, just not faster.
    OPENING = 25

    def __init__(
        self, session: Session, servers: list[Daphne], execution_id: str, count: int
    ) -> None:
        self.cookie = f"sessionid={session.cookies['sessionid']}"
        self.path = f"/ws/executions/{execution_id}/"
        self.members = [CrowdMember(servers[n % len(servers)]) for n in range(count)]
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._opening: asyncio.Semaphore | None = None
        for member in self.members:
            asyncio.run_coroutine_threadsafe(self._watch(member), self.loop)

    async def _watch(self, member: CrowdMember) -> None:
        if self._opening is None:
            self._opening = asyncio.Semaphore(self.OPENING)
        while True:
            try:
                async with self._opening:
                    socket = await websockets.asyncio.client.connect(
                        f"ws://127.0.0.1:{member.server.port}{self.path}",
                        origin=member.server.url,
                        additional_headers={"Cookie": self.cookie},
                        proxy=None,
                        open_timeout=60,
                        max_queue=None,
                    )
                member.connected = True
                async with socket:
                    async for raw in socket:
                        member.events.append(json.loads(raw))
                member.closes.append(socket.close_code)
            except (OSError, TimeoutError, websockets.WebSocketException) as error:
                member.closes.append(None)
                self.errors.append(f"{type(error).__name__}: {error}")
            member.connected = False
            if member.closes[-1] in (4403, 4404):
                return
            await asyncio.sleep(self.RECONNECT_DELAY)

    def wait_until(
        self, predicate: Callable[[CrowdMember], bool], timeout: float, what: str
    ) -> None:
        """Until `predicate` holds for every member."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [member for member in self.members if not predicate(member)]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(behind)} of {len(self.members)} watchers not {what} "
                    f"after {timeout}s; one heard {behind[0].events[-3:]}, "
                    f"closes {behind[0].closes}; errors {self.errors[:5]}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        async def hang_up() -> None:
            tasks = [
                task
                for task in asyncio.all_tasks()
                if task is not asyncio.current_task()
            ]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(hang_up(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
