"""Load test against a real daphne on 127.0.0.1 (bounded, stops by itself).

    .venv/bin/python -m benchmarks.load [--seconds 60] [--executions 50]
                                        [--watchers 200] [--interrupts-per-second 5]

Keeps `--executions` runs of demo.steps going at once through the JSON API,
`--watchers` websocket clients watching them (each follows one execution to
its `finished` event, then picks another), and a stream of API interrupts
at random running executions. At the end it checks: no HTTP or websocket
errors, every execution reached a terminal state, every accepted interrupt
landed (the run ended `interrupted`, or `succeeded` with every step done
when the request came after its last step), and daphne's memory stayed flat.
Exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import websockets

from benchmarks.support import free_port, summary
from executions.flow import DAPHNE_ARGS

ROOT = Path(__file__).resolve().parent.parent
CSRF = secrets.token_hex(16)


def prepare(database_url: str) -> str:
    """Migrate a fresh database and log a user in; return its session key."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peace_site.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("load", password=CSRF)
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class Load:
    def __init__(self, port: int, session: str, options) -> None:
        self.port = port
        self.options = options
        self.cookie = f"sessionid={session}; csrftoken={CSRF}"
        self.errors: Counter[str] = Counter()
        self.running: set[str] = set()
        self.started: list[str] = []
        self.interrupted: set[str] = set()
        self.events = 0
        self.stop_at = 0.0

    def request(self, method: str, path: str, body: dict | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Cookie": self.cookie, "X-CSRFToken": CSRF}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(
                method, path, json.dumps(body) if body else None, headers
            )
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    async def api(self, method: str, path: str, body: dict | None = None):
        return await asyncio.to_thread(self.request, method, path, body)

    async def keep_executions_going(self) -> None:
        while time.monotonic() < self.stop_at:
            while len(self.running) < self.options.executions:
                status, body = await self.api(
                    "POST",
                    "/api/executions/",
                    {"cmd": "demo.steps", "params": {"count": 5, "seconds": 1.5}},
                )
                if status != 201:
                    self.errors[f"start {status}"] += 1
                    break
                self.running.add(body["id"])
                self.started.append(body["id"])
            await asyncio.sleep(0.2)

    async def interrupt_stream(self) -> None:
        pause = 1 / self.options.interrupts_per_second
        while time.monotonic() < self.stop_at:
            await asyncio.sleep(pause)
            candidates = sorted(self.running - self.interrupted)
            if not candidates:
                continue
            target = random.choice(candidates)
            status, body = await self.api(
                "POST", f"/api/executions/{target}/interrupt/", {"reason": "load"}
            )
            if status == 202:
                self.interrupted.add(target)
            elif status != 409:  # 409: it finished meanwhile
                self.errors[f"interrupt {status}"] += 1

    async def watcher(self, number: int) -> None:
        url = f"ws://127.0.0.1:{self.port}/ws/executions/"
        origin = f"http://127.0.0.1:{self.port}"
        while time.monotonic() < self.stop_at:
            candidates = sorted(self.running)
            if not candidates:
                await asyncio.sleep(0.1)
                continue
            target = candidates[number % len(candidates)]
            try:
                async with websockets.connect(
                    url + f"{target}/",
                    origin=origin,
                    additional_headers={"Cookie": self.cookie},
                    open_timeout=30,
                ) as socket:
                    async for raw in socket:
                        message = json.loads(raw)
                        self.events += 1
                        if message["type"] == "error":
                            self.errors[f"ws error {message.get('code')}"] += 1
                        if message["type"] in ("finished", "snapshot") and (
                            message["execution"]["status"]
                            in ("succeeded", "failed", "interrupted", "lost")
                        ):
                            self.running.discard(target)
                            break
            except (OSError, websockets.WebSocketException) as error:
                self.errors[f"ws {type(error).__name__}"] += 1
                await asyncio.sleep(0.5)

    async def sample_memory(self, pid: int, samples: list[float]) -> None:
        process = psutil.Process(pid)
        while time.monotonic() < self.stop_at:
            samples.append(process.memory_info().rss / 2**20)
            await asyncio.sleep(1)

    async def settle(self, timeout: float = 60) -> dict[str, dict]:
        """Wait until every execution started is terminal; return them."""
        deadline = time.monotonic() + timeout
        while True:
            _, body = await self.api("GET", "/api/executions/?limit=500")
            rows = {row["id"]: row for row in body["executions"]}
            active = [i for i in self.started if rows[i]["status"] in ACTIVE]
            if not active or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.5)


ACTIVE = ("queued", "running", "interrupting")


async def run(port: int, session: str, daphne_pid: int, options) -> int:
    load = Load(port, session, options)
    load.stop_at = time.monotonic() + options.seconds
    memory: list[float] = []
    await asyncio.gather(
        load.keep_executions_going(),
        load.interrupt_stream(),
        load.sample_memory(daphne_pid, memory),
        *(load.watcher(number) for number in range(options.watchers)),
    )
    rows = await load.settle()
    by_status = Counter(rows[i]["status"] for i in load.started)
    landed = sum(
        rows[i]["status"] == "interrupted"
        or (
            rows[i]["status"] == "succeeded"
            and not rows[i]["outcome"]["steps_not_processed"]
        )
        for i in load.interrupted
    )
    stuck = [i for i in load.started if rows[i]["status"] in ACTIVE]
    window = max(1, len(memory) // 6)
    early = sum(memory[window : 2 * window]) / window
    late = sum(memory[-window:]) / window
    print(f"| duration | {options.seconds} s |")
    print(f"| executions started | {len(load.started)} |")
    print(f"| final statuses | {dict(by_status)} |")
    print(f"| interrupts accepted (202) | {len(load.interrupted)} |")
    print(f"| interrupts landed | {landed} |")
    print(f"| websocket events received | {load.events} |")
    print(f"| errors | {dict(load.errors) or 'none'} |")
    print(f"| daphne RSS MiB (after warm-up → last) | {early:.1f} → {late:.1f} |")
    print(f"| daphne RSS MiB samples | {summary(memory)} |")
    failures = []
    if load.errors:
        failures.append("errors")
    if stuck:
        failures.append(f"{len(stuck)} executions not terminal")
    if landed != len(load.interrupted):
        failures.append(f"{len(load.interrupted) - landed} interrupts did not land")
    if late > early * 1.25 + 10:
        failures.append("memory grew")
    print("result:", "PASS" if not failures else "FAIL: " + ", ".join(failures))
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--executions", type=int, default=50)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--interrupts-per-second", type=float, default=5)
    options = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="peace-load-")
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{scratch}/db.sqlite3"
    session = prepare(database_url)
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    daphne = subprocess.Popen(
        [str(ROOT / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(port)]
        + [*DAPHNE_ARGS, "peace_site.asgi:application"],
        env=env,
        cwd=ROOT,
        stdout=open(Path(scratch, "daphne.log"), "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                if time.monotonic() > deadline or daphne.poll() is not None:
                    sys.exit(Path(scratch, "daphne.log").read_text())
                time.sleep(0.1)
        return asyncio.run(run(port, session, daphne.pid, options))
    finally:
        daphne.send_signal(signal.SIGTERM)
        try:
            daphne.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daphne.kill()
        print(f"(daphne log: {scratch}/daphne.log)")


if __name__ == "__main__":
    sys.exit(main())
